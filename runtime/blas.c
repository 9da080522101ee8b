/* Which OpenBLAS kernels this process runs; see blas.h. */
#include <cblas.h>

#include "blas.h"

const char *dl_blas_corename(void)
{
    const char *name = openblas_get_corename();
    return name ? name : "unknown";
}
