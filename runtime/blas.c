/* OpenBLAS kernel choice; see blas.h. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas.h"

/* Kernel families of AVX2 and older x86 CPUs, which an AVX-512 CPU outgrows. */
static int older_than_avx512(const char *core)
{
    static const char *const older[] = {"Haswell",  "Zen",    "Sandybridge", "Nehalem", "Core2",
                                        "Prescott", "Katmai", "Atom",        NULL};
    for (int i = 0; older[i]; i++)
        if (!strcmp(core, older[i]))
            return 1;
    return 0;
}

void dl_blas_choose_kernels(char **argv)
{
#if defined(__x86_64__)
    const char *keep = getenv("DLTRAIN_BLAS_CORETYPE");
    if (getenv("OPENBLAS_CORETYPE") || (keep && !strcmp(keep, "keep")))
        return;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512dq") || !__builtin_cpu_supports("avx512vl"))
        return;
    if (!older_than_avx512(dl_blas_corename()))
        return;
    /* The same program, arguments and process id: launchers such as mpirun
     * see nothing but the variable. */
    if (setenv("OPENBLAS_CORETYPE", "SkylakeX", 1) == 0)
        execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* exec failed: carry on with the kernels we have */
#else
    (void)argv;
#endif
}

const char *dl_blas_corename(void)
{
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
}
