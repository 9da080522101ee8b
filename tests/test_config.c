/* The job-file parser: values, defaults, overrides, and every error a user
 * can hit, each checked for the line and the accepted values it names. */
#include <stdlib.h>

#include "check.h"
#include "runtime/config.h"

static const char *good = "; a comment\n"
                          "[train]\n"
                          "epochs = 3            ; inline comment\n"
                          "  batch_size = 32\n"
                          "seed = 7\n"
                          "\n"
                          "[data]\n"
                          "train = a.h5\n"
                          "test = b.h5\n"
                          "[optim]\n"
                          "type = adamw\n"
                          "lr = 1e-3\n"
                          "[dense]\n"
                          "units = 16\n"
                          "activation = relu\n"
                          "[dense]\n"
                          "units = 4\n";

static dl_config_t cfg;

static int parse(const char *text, int n, char **over, dl_err_t *err)
{
    memset(err, 0, sizeof *err);
    return dl_config_parse(&cfg, "job.ini", text, n, over, err);
}

/* Parse good with `replace` substituted for the line starting with `prefix`
 * (or appended when prefix is NULL), expect DL_EINPUT and every needle. */
static void expect_error(const char *text, const char *n1, const char *n2)
{
    dl_err_t err;
    int rc = parse(text, 0, NULL, &err);
    CHECK(rc == DL_EINPUT);
    CHECK_CONTAINS(err.msg, n1);
    if (n2)
        CHECK_CONTAINS(err.msg, n2);
}

static char *with(const char *extra)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s%s", good, extra);
    return buf;
}

static void test_good(void)
{
    dl_err_t err;
    CHECK(parse(good, 0, NULL, &err) == 0);
    CHECK(cfg.epochs == 3 && cfg.batch_size == 32 && cfg.seed == 7);
    CHECK(strcmp(cfg.train_data, "a.h5") == 0 && strcmp(cfg.test_data, "b.h5") == 0);
    CHECK(cfg.optim.type == DL_OPT_ADAMW);
    CHECK_CLOSE(cfg.optim.lr, 1e-3, 1e-15, 0);
    CHECK(cfg.n_layers == 2);
    CHECK(cfg.layers[0].units == 16 && cfg.layers[0].act == DL_ACT_RELU && cfg.layers[0].bias);
    CHECK(cfg.layers[1].units == 4 && cfg.layers[1].act == DL_ACT_NONE);
    CHECK(cfg.layers[0].line == 13 && cfg.layers[1].line == 16);
    /* Defaults */
    CHECK(cfg.device == DL_DEVICE_CPU && cfg.log_every == 50 && cfg.max_steps == 0);
    CHECK(cfg.sched.type == DL_SCHED_CONSTANT);
    CHECK_CLOSE(cfg.optim.beta2, 0.999, 1e-15, 0);
    /* The digest depends on values, not on layout of the file. */
    uint64_t d = dl_config_digest(&cfg);
    char *over[] = {"optim.lr=0.002"};
    CHECK(parse(good, 1, over, &err) == 0);
    CHECK_CLOSE(cfg.optim.lr, 0.002, 1e-15, 0);
    CHECK(dl_config_digest(&cfg) != d);
}

static void test_overrides(void)
{
    dl_err_t err;
    char *over[] = {"train.epochs=9", "schedule.type=cosine", "train.global_batch_size=128"};
    CHECK(parse(good, 3, over, &err) == 0);
    CHECK(cfg.epochs == 9 && cfg.sched.type == DL_SCHED_COSINE);
    /* An override of one batch key replaces the file's other one. */
    CHECK(cfg.global_batch_size == 128 && cfg.batch_size == 0);

    char *bad_key[] = {"optim.lrr=0.1"};
    CHECK(parse(good, 1, bad_key, &err) == DL_EINPUT);
    CHECK_CONTAINS(err.msg, "command line");
    CHECK_CONTAINS(err.msg, "did you mean 'lr'");
    char *bad_form[] = {"epochs=3"};
    CHECK(parse(good, 1, bad_form, &err) == DL_EINPUT);
    CHECK_CONTAINS(err.msg, "section.key=value");
    char *bad_value[] = {"train.epochs=-1"};
    CHECK(parse(good, 1, bad_value, &err) == DL_EINPUT);
    CHECK_CONTAINS(err.msg, "out of range");
    char *layer[] = {"dense.units=3"};
    CHECK(parse(good, 1, layer, &err) == DL_EINPUT);
    CHECK_CONTAINS(err.msg, "cannot be overridden");
}

static void test_errors(void)
{
    /* Misspelt key: names file, line, key and the accepted keys, with a hint. */
    expect_error(with("[schedule]\nwarmup_step = 10\n"), "job.ini:19",
                 "did you mean 'warmup_steps'");
    expect_error(with("[schedule]\nwarmup_step = 10\n"), "unknown key 'warmup_step' in [schedule]",
                 "step_size");
    expect_error(with("[trian]\n"), "job.ini:18: unknown section [trian]", "[train]");
    expect_error(with("[dense]\nunit = 3\n"), "job.ini:19", "did you mean 'units'");
    /* Malformed and out-of-range values */
    expect_error("[train]\nepochs = ten\n", "job.ini:2: [train] epochs = 'ten' is not an integer",
                 NULL);
    expect_error("[train]\nepochs = 3.5\n", "is not an integer", NULL);
    expect_error("[optim]\nlr = -0.1\n", "job.ini:2: [optim] lr = -0.1 is out of range",
                 "accepted: 0 to 1000");
    expect_error("[optim]\nlr = fast\n", "is not a number", NULL);
    expect_error("[optim]\nnesterov = maybe\n", "is not a boolean", "true or false");
    expect_error("[optim]\ntype = adam\n", "'adam' is not accepted", "sgd, adamw");
    expect_error("[train]\ndevice = gpu\n", "accepted: cpu, cuda, auto", NULL);
    expect_error(with("[dense]\nunits = 0\n"), "job.ini:19", "out of range");
    expect_error(with("[dense]\nactivation = softmax\n"), "none, relu, leaky, gelu, tanh, sigmoid",
                 NULL);
    expect_error("[train]\nrun_dir =\n", "run_dir is empty", NULL);
    /* Structure */
    expect_error(with("[train]\nseed = 2\n"), "job.ini:18: section [train] appears a second time",
                 "first at line 2");
    expect_error("[train]\nepochs = 1\nepochs = 2\n",
                 "job.ini:3: key 'epochs' appears a second time", "first at line 2");
    expect_error("[train]\nthis is not ini\n", "job.ini:2: cannot read this line", NULL);
    expect_error("epochs = 3\n", "job.ini:1: key 'epochs' comes before any section", NULL);
    /* Indented keys are keys, never a continuation of the previous value. */
    dl_err_t err;
    CHECK(parse(good, 0, NULL, &err) == 0 && cfg.batch_size == 32 && cfg.epochs == 3);
    /* Missing required keys */
    expect_error("[train]\nepochs = 1\n[dense]\nunits = 2\n", "[data] train is required", NULL);
    expect_error("[train]\nepochs = 1\n[data]\ntrain = a\n[dense]\nunits = 2\n",
                 "[data] test is required", NULL);
    expect_error("[data]\ntrain = a\ntest = b\n[dense]\nunits = 2\n", "needs epochs or max_steps",
                 NULL);
    expect_error("[train]\nepochs = 1\n[data]\ntrain = a\ntest = b\n", "no layer sections", NULL);
    expect_error("[train]\nepochs = 1\n[data]\ntrain = a\ntest = b\n[dense]\nactivation = relu\n",
                 "job.ini:6: [dense] needs units", NULL);
    expect_error("[train]\nepochs = 1\nbatch_size = 4\nglobal_batch_size = 8\n[data]\ntrain = "
                 "a\ntest = b\n[dense]\nunits = 2\n",
                 "both batch_size", NULL);
    expect_error(with("[optim]\nnesterov = true\n"), "section [optim] appears a second time", NULL);
    expect_error("[train]\nepochs = 1\n[data]\ntrain = a\ntest = b\n[optim]\nnesterov = "
                 "true\n[dense]\nunits = 2\n",
                 "nesterov = true needs momentum > 0", NULL);
    /* Lines longer than inih's buffer (200 bytes in Debian's libinih): a
     * long value, such as a list of shards, is read whole, without its
     * inline comment and trailing blanks; any other long line is refused. */
    char longline[400];
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "[data]\n", 7);
    longline[sizeof longline - 1] = '\0';
    expect_error(longline, "job.ini:2: line is longer than", "not a key = value line");
    char spec[700] = "", text[1000];
    for (int i = 0; i < 40; i++)
        snprintf(spec + strlen(spec), sizeof spec - strlen(spec), "%sdata/shard-%03d.h5",
                 i ? "," : "", i);
    snprintf(text, sizeof text,
             "[train]\nepochs = 1\n[data]\ntrain = %s  ; all shards \ntest = b\n[dense]\nunits = "
             "2\n",
             spec);
    CHECK(parse(text, 0, NULL, &err) == 0);
    CHECK(strcmp(cfg.train_data, spec) == 0 && strcmp(cfg.test_data, "b") == 0);
}

static void test_print(void)
{
    dl_err_t err;
    CHECK(parse(good, 0, NULL, &err) == 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    dl_config_print(&cfg, f);
    fclose(f);
    CHECK_CONTAINS(buf, "epochs             = 3                    ; line 3");
    CHECK_CONTAINS(buf, "log_every          = 50                   ; default");
    CHECK_CONTAINS(buf, "[dense]");
    /* The printed configuration is itself a valid job file with the same values. */
    dl_config_t first = cfg;
    CHECK(parse(buf, 0, NULL, &err) == 0);
    CHECK(dl_config_digest(&cfg) == dl_config_digest(&first));
    free(buf);
}

static const char *head = "[train]\nepochs = 1\n[data]\ntrain = a\ntest = b\n";

static char *job(const char *layers)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s%s", head, layers);
    return buf;
}

static void test_layer_sections(void)
{
    dl_err_t err;
    int rc = parse(job("[conv]\nname = stem\nfilters = 8\n[batchnorm]\n[activation]\ntype = gelu\n"
                       "[maxpool]\n[conv]\nfilters = 8\nsize = 5\nbias = false\n[shortcut]\n"
                       "from = stem\n[conv]\nfilters = 8\nstride = 2\npad = 0\n[shortcut]\nfrom = "
                       "-4\nactivation = relu\n[avgpool]\n[dropout]\nrate = 0.25\n[flatten]\n"
                       "[dense]\nunits = 10\n"),
                   0, NULL, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    CHECK(rc == 0);
    CHECK(cfg.n_layers == 12);
    const dl_layer_spec_t *l = cfg.layers;
    CHECK(l[0].type == DL_LAYER_CONV && l[0].size == 3 && l[0].pad == 1 && l[0].stride == 1);
    CHECK(!strcmp(l[0].name, "stem") && l[0].bias == 1 && l[0].groups == 1);
    CHECK(l[1].type == DL_LAYER_BATCHNORM);
    CHECK_CLOSE(l[1].momentum, 0.1, 1e-12, 0);
    CHECK_CLOSE(l[1].eps, 1e-5, 1e-12, 0);
    CHECK(l[2].type == DL_LAYER_ACTIVATION && l[2].act == DL_ACT_GELU);
    CHECK(l[3].type == DL_LAYER_MAXPOOL && l[3].size == 2 && l[3].stride == 2 && l[3].pad == 0);
    CHECK(l[4].size == 5 && l[4].pad == 2 && l[4].bias == 0);
    CHECK(l[5].type == DL_LAYER_SHORTCUT && l[5].from == 0);
    CHECK(l[6].stride == 2 && l[6].pad == 0);
    CHECK(l[7].from == 3 && l[7].act == DL_ACT_RELU); /* -4 from section 8 is section 4 */
    CHECK(l[8].type == DL_LAYER_AVGPOOL && l[8].size == 0);
    CHECK(l[9].type == DL_LAYER_DROPOUT);
    CHECK_CLOSE(l[9].rate, 0.25, 1e-12, 0);
    CHECK(l[10].type == DL_LAYER_FLATTEN && l[11].type == DL_LAYER_DENSE);

    /* Errors, each with its line */
    expect_error(job("[conv]\nsize = 3\n"), "job.ini:6: [conv] needs filters", NULL);
    expect_error(job("[activation]\n"), "job.ini:6: [activation] needs type", NULL);
    expect_error(job("[dense]\nunits = 3\n[shortcut]\n"), "job.ini:8: [shortcut] needs from", NULL);
    expect_error(job("[dense]\nunits = 3\n[shortcut]\nfrom = -2\n"),
                 "job.ini:8: [shortcut] from = -2; accepted: -1 to -1", NULL);
    expect_error(job("[dense]\nunits = 3\n[shortcut]\nfrom = 1\n"), "from = 1; accepted", NULL);
    expect_error(job("[dense]\nunits = 3\n[shortcut]\nfrom = stem\n"),
                 "from = stem names no earlier layer section", NULL);
    expect_error(job("[dense]\nname = a\nunits = 3\n[dense]\nname = a\nunits = 3\n"),
                 "job.ini:9: name = a is already the name of the section at line 6", NULL);
    expect_error(job("[dense]\nname = a b\nunits = 3\n"), "name = a b; accepted: letters", NULL);
    expect_error(job("[dense]\nname = abcdefghijabcdefghijabcdefghijab\nunits = 3\n"),
                 "[dense] name is longer than 31 characters", NULL);
    expect_error(job("[conv]\nfilters = 2\nstrides = 2\n"), "did you mean 'stride'", NULL);
    expect_error(job("[maxpool]\nfilters = 2\n"),
                 "unknown key 'filters' in [maxpool]; accepted: name, size, stride, pad", NULL);
    expect_error(job("[conv]\nfilters = 2\npad = -2\n"), "pad = -2 is out of range", NULL);
    expect_error(job("[dropout]\nrate = 1\n"), "rate = 1 is out of range", NULL);
}

static void test_presets(void)
{
    dl_err_t err;
    CHECK(parse(job("[model]\npreset = cnn2\n"), 0, NULL, &err) == 0);
    CHECK(cfg.n_layers == 6 && cfg.layers[0].type == DL_LAYER_CONV);
    CHECK(cfg.layers[5].type == DL_LAYER_DENSE && cfg.layers[5].units == -1);
    char *over[] = {"model.preset=resnet8"};
    CHECK(parse(job("[model]\npreset = cnn2\n"), 1, over, &err) == 0);
    CHECK(cfg.n_layers > 10);
    expect_error(job("[model]\npreset = cnn2\n[dense]\nunits = 10\n"),
                 "[model] preset = cnn2 and layer sections (the first at line 8) both describe",
                 NULL);
    expect_error(job("[model]\npreset = vgg\n"),
                 "accepted: none, mlp, lenet, cnn2, cnn2bn, resnet8", NULL);
    /* The printed configuration of a preset parses back to the same one. */
    CHECK(parse(job("[model]\npreset = lenet\n"), 0, NULL, &err) == 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    dl_config_print(&cfg, f);
    fclose(f);
    CHECK_CONTAINS(buf, "; the layers of preset lenet:");
    uint64_t d = dl_config_digest(&cfg);
    CHECK(parse(buf, 0, NULL, &err) == 0);
    CHECK(dl_config_digest(&cfg) == d);
    free(buf);
}

/* The learning-rate keys of issue 5: plateau and the linear scaling rule. */
static void test_lr_keys(void)
{
    dl_err_t err;
    CHECK(parse(good, 0, NULL, &err) == 0);
    CHECK(cfg.optim.scale_lr == DL_SCALE_LR_NONE && cfg.optim.reference_batch == 256);
    CHECK(cfg.sched.plateau_metric == DL_PLATEAU_TEST_LOSS && cfg.sched.patience == 2);
    CHECK(cfg.sched.cooldown == 0);
    CHECK_CLOSE(cfg.sched.threshold, 1e-4, 1e-15, 0);
    CHECK_CLOSE(cfg.sched.gamma, 0.1, 1e-15, 0);
    char *over[] = {"schedule.type=plateau", "schedule.plateau_metric=test_accuracy",
                    "schedule.patience=0", "optim.scale_lr=linear", "optim.reference_batch=64"};
    CHECK(parse(good, 5, over, &err) == 0);
    CHECK(cfg.sched.type == DL_SCHED_PLATEAU && cfg.sched.patience == 0);
    CHECK(cfg.sched.plateau_metric == DL_PLATEAU_TEST_ACCURACY);
    CHECK(cfg.optim.scale_lr == DL_SCALE_LR_LINEAR && cfg.optim.reference_batch == 64);
    /* Plateau decides from evaluations: without them it is an error naming both keys. */
    char *no_eval[] = {"schedule.type=plateau", "train.eval_every=0"};
    CHECK(parse(good, 2, no_eval, &err) == DL_EINPUT);
    CHECK_CONTAINS(err.msg, "[schedule] type = plateau");
    CHECK_CONTAINS(err.msg, "[train] eval_every = 0");
    expect_error("[optim]\nscale_lr = sqrt\n", "'sqrt' is not accepted", "none, linear");
    expect_error("[optim]\nreference_batch = 0\n", "out of range", NULL);
    expect_error("[schedule]\nplateau_metric = loss\n", "test_loss, test_accuracy", NULL);
}

static void test_read_file(void)
{
    char *text = NULL;
    dl_err_t err = {0};
    CHECK(dl_config_read_file("/nonexistent/job.ini", &text, &err) == DL_EINPUT);
    CHECK_CONTAINS(err.msg, "/nonexistent/job.ini: cannot open the job file");
    CHECK(text == NULL);
}

int main(void)
{
    test_good();
    test_overrides();
    test_errors();
    test_print();
    test_read_file();
    test_lr_keys();
    test_layer_sections();
    test_presets();
    return CHECK_DONE();
}
