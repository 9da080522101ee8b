/* Which OpenBLAS kernels this process runs. OpenBLAS picks them for the CPU
 * when the library loads, unless OPENBLAS_CORETYPE names a family; the
 * choice can change speed by more than half (on this project's machines,
 * whose environment sets OPENBLAS_CORETYPE=Haswell, one core reaches about
 * 65 GFLOP/s in sgemm with the Haswell kernels and about 110 with the
 * Cooperlake/SkylakeX ones OpenBLAS picks by itself), so dltrain reports it. */
#ifndef DL_BLAS_H
#define DL_BLAS_H

/* OpenBLAS's kernel family, e.g. "Haswell" or "Cooperlake". */
const char *dl_blas_corename(void);

#endif
