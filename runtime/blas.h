/* OpenBLAS kernel choice. OpenBLAS picks its kernels for the CPU when the
 * library loads; a release older than the CPU does not know it and falls back
 * to older kernels (Debian 12's 0.3.21 runs Sapphire Rapids with its Haswell,
 * AVX2, kernels: sgemm at about 65 GFLOP/s per core instead of about 110 with
 * its SkylakeX, AVX-512, kernels). */
#ifndef DL_BLAS_H
#define DL_BLAS_H

/* If OpenBLAS chose AVX2-or-older kernels on a CPU with AVX-512 (F, BW, DQ,
 * VL) and OPENBLAS_CORETYPE is not set, run this program again (same
 * arguments, same process) with OPENBLAS_CORETYPE=SkylakeX; the variable is
 * only read when the library loads. Returns only if nothing was done (or the
 * exec failed); set DLTRAIN_BLAS_CORETYPE=keep to keep OpenBLAS's choice. */
void dl_blas_choose_kernels(char **argv);

/* OpenBLAS's kernel family, e.g. "SkylakeX". */
const char *dl_blas_corename(void);

#endif
