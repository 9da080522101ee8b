/* Progress display and metric files; see metrics.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "metrics.h"

int dl_mkdirs(const char *path, dl_err_t *err)
{
    char buf[DL_PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return DL_ERR(err, DL_EINPUT, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return DL_ERR(err, DL_EIO, "cannot create directory %s: %s", buf, strerror(errno));
            *p = c;
            if (!c)
                break;
        }
    }
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return DL_ERR(err, DL_EIO, "%s exists and is not a directory", path);
    return 0;
}

static FILE *open_csv(const char *dir, const char *name, const char *header, dl_err_t *err)
{
    char path[DL_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        DL_ERR(err, DL_EIO, "cannot write %s: %s", path, strerror(errno));
        return NULL;
    }
    fprintf(f, "%s\n", header);
    return f;
}

int dl_metrics_open(dl_metrics_t *m, const char *run_dir, int bar, dl_err_t *err)
{
    memset(m, 0, sizeof *m);
    /* Open MPI gives every rank a pseudo-terminal as stdout whether or not
     * mpirun's own output is a terminal, so under mpirun isatty says nothing. */
    if (bar < 0)
        bar = isatty(STDOUT_FILENO) && !getenv("OMPI_COMM_WORLD_SIZE");
    m->tty = bar;
    int rc = dl_mkdirs(run_dir, err);
    if (rc)
        return rc;
    m->csv = open_csv(run_dir, "metrics.csv",
                      "step,epoch,loss,train_accuracy,lr,samples_per_s,elapsed_s,data_wait_ms,"
                      "allreduce_ms,compute_ms",
                      err);
    if (!m->csv)
        return err->code;
    m->eval_csv = open_csv(run_dir, "eval.csv", "step,epoch,test_loss,test_accuracy", err);
    if (!m->eval_csv) {
        dl_metrics_close(m);
        return err->code;
    }
    return 0;
}

static void format_duration(double s, char *out, size_t size)
{
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(out, size, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else
        snprintf(out, size, "%ldm%02lds", t / 60, t % 60);
}

void dl_metrics_step(dl_metrics_t *m, const dl_step_stats_t *s)
{
    fprintf(m->csv, "%lld,%.4f,%.6f,%.6f,%.6g,%.1f,%.3f,%.3f,%.3f,%.3f\n", (long long)s->step,
            s->epoch, s->loss, s->accuracy, s->lr, s->samples_per_s, s->elapsed_s, s->data_wait_ms,
            s->allreduce_ms, s->compute_ms);
    fflush(m->csv);
    char eta[32];
    format_duration(s->eta_s, eta, sizeof eta);
    if (m->tty) {
        int width = 24, fill = (int)((double)width * (double)s->step / (double)s->total_steps);
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[width] = '\0';
        printf("\r[%s] step %lld/%lld  epoch %.2f/%lld  loss %.4f  lr %.4g  %.0f samples/s  ETA %s "
               "\033[K",
               bar, (long long)s->step, (long long)s->total_steps, s->epoch,
               (long long)s->epochs_total, s->loss, s->lr, s->samples_per_s, eta);
        m->bar_open = 1;
    } else {
        printf("step %lld/%lld  epoch %.2f/%lld  loss %.4f  train_acc %.4f  lr %.4g  %.0f "
               "samples/s  ETA %s\n",
               (long long)s->step, (long long)s->total_steps, s->epoch, (long long)s->epochs_total,
               s->loss, s->accuracy, s->lr, s->samples_per_s, eta);
    }
    fflush(stdout);
}

void dl_metrics_eval(dl_metrics_t *m, int64_t step, double epoch, double loss, double accuracy)
{
    fprintf(m->eval_csv, "%lld,%.4f,%.6f,%.6f\n", (long long)step, epoch, loss, accuracy);
    fflush(m->eval_csv);
    dl_metrics_say(m, "evaluation after epoch %.2f: test accuracy %.4f, test loss %.4f", epoch,
                   accuracy, loss);
}

void dl_metrics_say(dl_metrics_t *m, const char *fmt, ...)
{
    if (m->bar_open) {
        printf("\n");
        m->bar_open = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

void dl_metrics_close(dl_metrics_t *m)
{
    if (m->bar_open)
        printf("\n");
    if (m->csv)
        fclose(m->csv);
    if (m->eval_csv)
        fclose(m->eval_csv);
    memset(m, 0, sizeof *m);
}
