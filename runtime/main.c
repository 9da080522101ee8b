/* dltrain: train a network as a job file describes, on every rank that
 * mpirun starts.
 *
 *   dltrain JOB.ini [section.key=value ...]          train
 *   dltrain --check JOB.ini [section.key=value ...]  validate and print the plan
 *   mpirun -np N dltrain --evaluate JOB.ini [--checkpoint PATH] [section.key=value ...]
 *                                                    evaluate a checkpoint
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "collectives/comm.h"
#include "models/device.h"
#include "runtime/config.h"
#include "runtime/dist.h"
#include "runtime/signals.h"
#include "runtime/train.h"

static const char usage[] =
    "usage: mpirun -np N dltrain JOB.ini [section.key=value ...]\n"
    "       dltrain --check JOB.ini [section.key=value ...]\n"
    "       mpirun -np N dltrain --evaluate JOB.ini [--checkpoint PATH] [section.key=value ...]\n"
    "       dltrain --keys | --help | --version\n"
    "\n"
    "Trains the network described by the job file JOB.ini on every rank mpirun starts.\n"
    "Overrides such as optim.lr=0.1 or train.epochs=5 take precedence over the file.\n"
    "\n"
    "  --check    validate the job file and its data, print the resolved configuration\n"
    "             and the plan (batches, steps, parameters), and exit; no MPI needed\n"
    "  --evaluate load a checkpoint into the job's model and evaluate it on the test data,\n"
    "             without training: prints the test accuracy and loss and writes\n"
    "             RUN_DIR/evaluation.json; on any number of ranks (or without mpirun)\n"
    "  --checkpoint PATH  with --evaluate: the checkpoint file to evaluate; by default the\n"
    "             newest one that verifies in the job's checkpoint directory\n"
    "  --keys     list every accepted section and key with its default and meaning\n"
    "  --help     show this text\n"
    "  --version  show the version\n"
    "\n"
    "Exit status: 0 done; 2 bad job file, data or command line; 75 stopped by SIGTERM or\n"
    "SIGUSR1 with the state saved (requeue me); 3 aborted by the watchdog or a failed\n"
    "collective; 1 anything else.\n"
    "The job file format is described in docs/job-file.md.\n";

/* World size for --check when started by a launcher, else 1. */
static int launcher_world_size(void)
{
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0)
            return atoi(v);
    }
    return 1;
}

/* device = cuda needs a build with the CUDA backend; whether this node
 * has GPUs is checked when training starts (--check may run elsewhere). */
static int check_device(const dl_config_t *cfg, dl_err_t *err)
{
    if (cfg->device == DL_DEVICE_CUDA && !dl_cuda_built())
        return DL_ERR(err, DL_EINPUT,
                      "%s: [train] device = cuda, but this dltrain was built without CUDA (CMake "
                      "found no CUDA toolkit, or DLTRAIN_CUDA=OFF); rebuild with the CUDA "
                      "toolkit, or use device = cpu or auto",
                      cfg->path);
    return 0;
}

static int run_check(const char *path, int n_over, char **over)
{
    dl_err_t err = {0};
    dl_config_t *cfg = malloc(sizeof *cfg);
    char *text = NULL;
    int rc =
        cfg ? dl_config_read_file(path, &text, &err) : DL_ERR(&err, DL_ENOMEM, "out of memory");
    if (!rc)
        rc = dl_config_parse(cfg, path, text, n_over, over, &err);
    if (!rc)
        rc = check_device(cfg, &err);
    dl_plan_t plan;
    if (!rc)
        rc = dl_plan_make(cfg, launcher_world_size(), &plan, NULL, NULL, &err);
    if (!rc) {
        printf("; resolved configuration of %s\n", path);
        dl_config_print(cfg, stdout);
        printf("\n");
        rc = dl_plan_print(cfg, &plan, stdout, &err);
        dl_plan_free(&plan);
    }
    if (!rc)
        printf("; ok\n");
    else
        dl_err_print("dltrain", &err);
    free(text);
    free(cfg);
    return dl_err_exit_status(rc);
}

/* Rank 0 reads the job file and sends its text to every rank, so the file
 * need only be readable where rank 0 runs; every rank parses the same text
 * with the same overrides and so holds the same configuration. */
static int share_job_text(dl_comm_t *comm, const char *path, char **text, dl_err_t *err)
{
    int64_t len = 0;
    int rc = 0;
    if (dl_comm_rank(comm) == 0) {
        rc = dl_config_read_file(path, text, err);
        len = rc ? -1 : (int64_t)strlen(*text);
    }
    int crc = dl_comm_broadcast(comm, &len, sizeof len, 0, err);
    if (crc)
        return crc;
    if (len < 0)
        return dl_comm_rank(comm) == 0 ? rc : (err->msg[0] = '\0', DL_EINPUT);
    if (dl_comm_rank(comm) != 0) {
        *text = dl_calloc((size_t)len + 1, 1, err);
        if (!*text)
            return DL_ENOMEM; /* the broadcast below would hang: abort in main */
    }
    return dl_comm_broadcast(comm, *text, len, 0, err);
}

/* Train (ckpt unused), or with evaluate set evaluate the checkpoint ckpt
 * (NULL: the newest in the job's checkpoint directory). */
/* Every rank learns whether any was started wrongly (dist.h); the lowest
 * such rank keeps the explanation, the others an empty message. */
static int agree_launch(dl_comm_t *comm, const dl_dist_t *d, dl_err_t *err)
{
    int64_t first = d->launch_problem[0] ? d->rank : INT64_MAX;
    int rc = dl_comm_allreduce_min_i64(comm, &first, 1, err);
    if (rc || first == INT64_MAX)
        return rc;
    if (first == d->rank)
        return DL_ERR(err, DL_EINPUT, "%s", d->launch_problem);
    err->code = DL_EINPUT;
    err->msg[0] = '\0';
    return DL_EINPUT;
}

static int run_train(int argc, char **argv, const char *path, int n_over, char **over, int evaluate,
                     const char *ckpt)
{
    dl_err_t err = {0};
    dl_dist_t dist;
    int rc = dl_dist_init(&dist, &argc, &argv, &err);
    if (rc) {
        dl_err_print("dltrain", &err);
        return dl_err_exit_status(rc);
    }
    dl_comm_t *comm = NULL;
    char *text = NULL;
    dl_config_t *cfg = calloc(1, sizeof *cfg);
    rc = cfg ? dl_comm_create_world(&comm, &err) : DL_ERR(&err, DL_ENOMEM, "out of memory");
    int launch_rc = rc ? 0 : agree_launch(comm, &dist, &err);
    if (launch_rc) /* its message stays on the rank that found it */
        rc = launch_rc;
    else if (!rc)
        rc = share_job_text(comm, path, &text, &err);
    if (rc == DL_ENOMEM || rc == DL_ELIB) {
        dl_err_print("dltrain", &err);
        dl_comm_abort(1); /* the other ranks may be waiting in a collective */
    }
    /* Every rank parses the same text, so all ranks agree on the outcome and
     * only rank 0 needs to print it. */
    if (!rc)
        rc = dl_config_parse(cfg, path, text, n_over, over, &err);
    if (!rc)
        rc = check_device(cfg, &err);
    if (!rc && !evaluate) /* evaluation saves nothing: a signal may end it at once */
        rc = dl_signals_install(&err);
    if (!rc) {
        dl_dist_set_threads(&dist, (int)cfg->threads);
        rc = evaluate ? dl_train_evaluate(cfg, ckpt, &dist, comm, &err)
                      : dl_train_run(cfg, text, &dist, comm, &err);
    } else if (dist.rank != 0 && !launch_rc) {
        err.msg[0] = '\0';
    }
    if (rc && err.msg[0])
        dl_err_print(dist.size > 1 && dist.rank ? "dltrain (rank > 0)" : "dltrain", &err);
    free(text);
    free(cfg);
    dl_comm_free(comm);
    dl_dist_finalize(&dist);
    return dl_err_exit_status(rc);
}

/* Take --checkpoint PATH out of the arguments after JOB.ini: *ckpt gets
 * PATH, over the others (malloc'd) and *n_over their number. */
static int take_checkpoint_arg(int argc, char **argv, int first, const char **ckpt, char ***over,
                               int *n_over)
{
    *ckpt = NULL;
    *n_over = 0;
    *over = calloc((size_t)argc, sizeof **over);
    if (!*over) {
        fprintf(stderr, "dltrain: out of memory\n");
        return 1;
    }
    for (int i = first + 1; i < argc; i++) {
        if (strcmp(argv[i], "--checkpoint") != 0) {
            (*over)[(*n_over)++] = argv[i];
            continue;
        }
        if (*ckpt || i + 1 >= argc || argv[i + 1][0] == '\0') {
            fprintf(stderr, "dltrain: %s\n",
                    *ckpt ? "--checkpoint is given twice; name one checkpoint file"
                          : "--checkpoint needs the path of a checkpoint file");
            free(*over);
            *over = NULL;
            return 2;
        }
        *ckpt = argv[++i];
    }
    return 0;
}

int main(int argc, char **argv)
{
    int check = 0, evaluate = 0, first = 1;
    if (argc >= 2 && strcmp(argv[1], "--help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("dltrain %s (%s)\n", DLTRAIN_VERSION,
               dl_cuda_built() ? "CPU and CUDA backends" : "CPU backend only");
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--keys") == 0) {
        dl_config_print_keys(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--check") == 0) {
        check = 1;
        first = 2;
    }
    if (argc >= 2 && strcmp(argv[1], "--evaluate") == 0) {
        evaluate = 1;
        first = 2;
    }
    if (argc <= first || argv[first][0] == '-') {
        if (argc > first)
            fprintf(stderr, "dltrain: unknown option '%s'\n", argv[first]);
        fputs(usage, stderr);
        return 2;
    }
    const char *path = argv[first];
    int n_over = argc - first - 1;
    char **over = argv + first + 1;
    if (check)
        return run_check(path, n_over, over);
    if (!evaluate)
        return run_train(argc, argv, path, n_over, over, 0, NULL);
    const char *ckpt = NULL;
    int rc = take_checkpoint_arg(argc, argv, first, &ckpt, &over, &n_over);
    if (rc)
        return rc;
    rc = run_train(argc, argv, path, n_over, over, 1, ckpt);
    free(over);
    return rc;
}
