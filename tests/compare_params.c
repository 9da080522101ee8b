/* compare_params A.bin B.bin TOL: compares the parameters of two params.bin
 * files written by dltrain and succeeds when max|a - b| <= TOL * max|b| (the relative error in
 * the max norm) and the counts agree. Prints both errors. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float *load(const char *path, int64_t *n)
{
    FILE *f = fopen(path, "rb");
    char magic[8];
    uint32_t version, reserved;
    int64_t n_state = 0; /* version 2: state values follow the parameters (not compared) */
    if (!f || fread(magic, 1, 8, f) != 8 || memcmp(magic, "DLTPARAM", 8) != 0 ||
        fread(&version, 4, 1, f) != 1 || (version != 1 && version != 2) ||
        fread(&reserved, 4, 1, f) != 1 || fread(n, 8, 1, f) != 1 || *n <= 0 ||
        (version == 2 && fread(&n_state, 8, 1, f) != 1)) {
        fprintf(stderr, "compare_params: %s is not a dltrain params.bin file\n", path);
        exit(2);
    }
    float *p = malloc((size_t)*n * sizeof(float));
    if (!p || fread(p, sizeof(float), (size_t)*n, f) != (size_t)*n) {
        fprintf(stderr, "compare_params: %s is truncated\n", path);
        exit(2);
    }
    fclose(f);
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: compare_params A.bin B.bin TOL\n");
        return 2;
    }
    int64_t na, nb;
    float *a = load(argv[1], &na), *b = load(argv[2], &nb);
    if (na != nb) {
        fprintf(stderr, "compare_params: %lld parameters against %lld\n", (long long)na,
                (long long)nb);
        return 1;
    }
    double maxdiff = 0, maxb = 0, sum2 = 0, sumb2 = 0;
    for (int64_t i = 0; i < na; i++) {
        double d = fabs((double)a[i] - b[i]);
        maxdiff = d > maxdiff ? d : maxdiff;
        maxb = fabs(b[i]) > maxb ? fabs(b[i]) : maxb;
        sum2 += d * d;
        sumb2 += (double)b[i] * b[i];
    }
    double rel = maxdiff / maxb, tol = atof(argv[3]);
    printf("%lld parameters: max abs diff %.3g, relative (max norm) %.3g, relative (2-norm) "
           "%.3g, tolerance %.3g\n",
           (long long)na, maxdiff, rel, sqrt(sum2 / sumb2), tol);
    free(a);
    free(b);
    return rel <= tol ? 0 : 1;
}
