/*
 * The benchmark driver: options, the timing loop (calibration, warm-up,
 * timed repetitions, median and spread), the human table and JSON lines,
 * and the child process that measures peak resident memory.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench-cases.h"

#define MAX_THREAD_COUNTS 16
#define MAX_SAMPLES       1000
/* One sample lasts at least this long: short calls are repeated inside it. */
#define SAMPLE_TARGET_S 2e-3
/* Training steps the peak-memory child runs (the first one warms the tape). */
#define RSS_STEPS 3

struct bench_opts {
    long reps;
    long warmup;
    double min_time;
    const char *filter;
    int n_threads;
    int threads[MAX_THREAD_COUNTS];
    bool json;
    bool samples;
    bool quick;
    bool list;
    bool rss_child;
};

struct bench_result {
    int n;
    int64_t inner;
    double median, min, max;
    double cpu_median; // process CPU seconds per repetition, all threads
    double samples[MAX_SAMPLES];
    double cpu[MAX_SAMPLES];
};

static void usage(const char *prog)
{
    printf("Usage: %s [OPTIONS]\n\n"
           "Time tapegrad's kernels at the shapes of the default model (batch %d), a\n"
           "training step, the tape's fixed cost per op, and peak resident memory.\n\n"
           "  --case TEXT      only the cases whose name contains TEXT\n"
           "  --threads LIST   comma-separated thread counts (default 1,2)\n"
           "  --reps N         timed repetitions per case, at least (default 10)\n"
           "  --warmup N       untimed repetitions first (default 2; one always runs)\n"
           "  --min-time S     keep repeating until S seconds are timed (default 0.5)\n"
           "  --quick          short run: reps 3, warm-up 1, min-time 0, threads 1 (unless\n"
           "                   given), no heavy cases\n"
           "  --json           one JSON object per line instead of a table\n"
           "  --samples        with --json, add every sample (samples_s)\n"
           "  --list           list the cases and exit\n"
           "  -h, --help       this help\n\n"
           "The first warm-up run calibrates: a sample is one repetition, or several when\n"
           "one lasts under 2 ms (the time is divided). Rates are computed from the median.\n"
           "With --list, --json gives one object per case.\n"
           "Exit status: 0, 1 when a case fails, 2 for a bad command line.\n",
           prog, BENCH_BATCH);
}

static int usage_error(const char *prog, const char *fmt, ...) TG_PRINTF(2, 3);

static int usage_error(const char *prog, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s --help'.\n", prog);
    return 2;
}

/* ---- Options ------------------------------------------------------------------ */

static bool parse_long(const char *text, long lo, long hi, long *v)
{
    char *end;
    errno = 0;
    long x = strtol(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || errno != 0 || x < lo || x > hi)
        return false;
    *v = x;
    return true;
}

static bool parse_threads(const char *text, struct bench_opts *o)
{
    char buf[128];
    if (strlen(text) >= sizeof(buf))
        return false;
    strcpy(buf, text);
    o->n_threads = 0;
    for (char *tok = strtok(buf, ","); tok != NULL; tok = strtok(NULL, ",")) {
        long t;
        if (o->n_threads == MAX_THREAD_COUNTS || !parse_long(tok, 1, 64, &t))
            return false;
        o->threads[o->n_threads++] = (int)t;
    }
    return o->n_threads > 0;
}

/* Options taking a value; returns false after a usage error. */
static bool parse_valued(const char *prog, const char *a, const char *v, struct bench_opts *o)
{
    bool ok = true;
    if (strcmp(a, "--reps") == 0)
        ok = parse_long(v, 1, MAX_SAMPLES, &o->reps);
    else if (strcmp(a, "--warmup") == 0)
        ok = parse_long(v, 0, 1000, &o->warmup);
    else if (strcmp(a, "--threads") == 0)
        ok = parse_threads(v, o);
    else if (strcmp(a, "--case") == 0)
        o->filter = v;
    else if (strcmp(a, "--min-time") == 0) {
        char *end;
        o->min_time = strtod(v, &end);
        ok = v[0] != '\0' && *end == '\0' && o->min_time >= 0 && o->min_time <= 3600;
    }
    if (!ok)
        usage_error(prog, "bad value for %s", a);
    return ok;
}

static bool is_valued(const char *a)
{
    static const char *const valued[] = {"--reps", "--warmup", "--threads", "--case", "--min-time"};
    for (size_t i = 0; i < sizeof(valued) / sizeof(valued[0]); i++)
        if (strcmp(a, valued[i]) == 0)
            return true;
    return false;
}

static bool set_flag(const char *a, struct bench_opts *o)
{
    bool *flag = strcmp(a, "--json") == 0        ? &o->json
                 : strcmp(a, "--samples") == 0   ? &o->samples
                 : strcmp(a, "--quick") == 0     ? &o->quick
                 : strcmp(a, "--list") == 0      ? &o->list
                 : strcmp(a, "--rss-child") == 0 ? &o->rss_child
                                                 : NULL;
    if (flag != NULL)
        *flag = true;
    return flag != NULL;
}

/* Returns -1 to go on, else the exit status (help or a usage error). */
static int parse_opts(const char *prog, int argc, char **argv, struct bench_opts *o)
{
    *o = (struct bench_opts){-1, -1, -1, NULL, 2, {1, 2}, false, false, false, false, false};
    bool threads_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(prog);
            return 0;
        }
        if (set_flag(a, o))
            continue;
        if (!is_valued(a))
            return usage_error(prog, "unknown option '%s'", a);
        if (i + 1 == argc)
            return usage_error(prog, "%s needs a value", a);
        threads_given |= strcmp(a, "--threads") == 0;
        if (!parse_valued(prog, a, argv[++i], o))
            return 2;
    }
    if (o->quick && !threads_given)
        o->n_threads = 1;
    if (o->reps < 0)
        o->reps = o->quick ? 3 : 10;
    if (o->warmup < 0)
        o->warmup = o->quick ? 1 : 2;
    if (o->min_time < 0)
        o->min_time = o->quick ? 0.0 : 0.5;
    return -1;
}

static bool selected(const struct bench_case *c, const struct bench_opts *o)
{
    if (o->filter != NULL && strstr(c->name, o->filter) == NULL)
        return false;
    return !(o->quick && c->heavy);
}

/* ---- Timing ------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts x[0..n) in place; returns its median. */
static double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

static void summarise(struct bench_result *r)
{
    double sorted[MAX_SAMPLES];
    memcpy(sorted, r->samples, (size_t)r->n * sizeof(double));
    r->median = median(sorted, r->n);
    r->min = sorted[0];
    r->max = sorted[r->n - 1];
    memcpy(sorted, r->cpu, (size_t)r->n * sizeof(double));
    r->cpu_median = median(sorted, r->n);
}

/*
 * One calibration run sets how many calls make a sample; then the warm-up
 * samples, then timed samples until both reps and min_time are reached.
 */
static bool
time_case(const struct bench_case *c, const struct bench_opts *o, struct bench_result *r)
{
    struct bench_state *s = bench_setup(c);
    if (s == NULL)
        return false;
    double cpu;
    double t = bench_run(s, 1, &cpu);
    r->inner = t > 0 && t < SAMPLE_TARGET_S ? (int64_t)ceil(SAMPLE_TARGET_S / t) : 1;
    /* A calibration run of one call is also the first warm-up sample. */
    for (long i = r->inner == 1 ? 1 : 0; t >= 0 && i < o->warmup; i++)
        t = bench_run(s, r->inner, &cpu);
    double total = 0;
    r->n = 0;
    while (t >= 0 && r->n < MAX_SAMPLES && (r->n < o->reps || total < o->min_time)) {
        t = bench_run(s, r->inner, &cpu);
        r->cpu[r->n] = cpu / (double)r->inner;
        r->samples[r->n++] = t / (double)r->inner;
        total += t;
    }
    bench_teardown(s);
    if (t < 0)
        return false;
    summarise(r);
    return true;
}

/* ---- Output ------------------------------------------------------------------- */

static const char *fmt_time(char *buf, size_t size, double s)
{
    if (s < 1e-6)
        snprintf(buf, size, "%.1f ns", s * 1e9);
    else if (s < 1e-3)
        snprintf(buf, size, "%.2f us", s * 1e6);
    else if (s < 1)
        snprintf(buf, size, "%.2f ms", s * 1e3);
    else
        snprintf(buf, size, "%.3f s", s);
    return buf;
}

/* The case's rate from a time per repetition, and its unit for the table and JSON. */
static double rate_of(const struct bench_case *c, double t, const char **unit, const char **key)
{
    double w = bench_case_work(c);
    switch (bench_case_unit(c)) {
    case BENCH_UNIT_GFLOPS:
        *unit = "GFLOP/s", *key = "gflops";
        return w / t * 1e-9;
    case BENCH_UNIT_SAMPLES:
        *unit = "samples/s", *key = "samples_per_s";
        return w / t;
    case BENCH_UNIT_NS_OP:
        *unit = "ns/op", *key = "ns_per_op";
        return t / w * 1e9;
    case BENCH_UNIT_GBPS:
        *unit = "GB/s", *key = "gb_per_s";
        return w / t * 1e-9;
    case BENCH_UNIT_MIB:
        break;
    }
    *unit = "", *key = "none";
    return 0;
}

static void print_header(const struct bench_opts *o)
{
    printf("tapegrad benchmarks: GEMM kernel %s, allocator %s, default threads %d\n",
           tg_gemm_kernel_name(), tg_alloc_uses_jemalloc() ? "jemalloc" : "system",
           tg_get_num_threads());
    printf("each case: %ld warm-up samples (the first also calibrates), then >= %ld samples and >= "
           "%.2f s;"
           " rate from the median;\n"
           "cpu = median process CPU time per repetition, all threads (robust to a busy "
           "machine)\n\n",
           o->warmup, o->reps, o->min_time);
    printf("%-22s %3s %5s %10s %10s %10s %10s %12s\n", "case", "thr", "n", "median", "min", "max",
           "cpu", "rate");
}

static void print_row(const struct bench_case *c,
                      int threads,
                      const struct bench_result *r,
                      const struct bench_opts *o)
{
    const char *unit;
    const char *key;
    double rate = rate_of(c, r->median, &unit, &key);
    if (o->json) {
        printf("{\"case\":\"%s\",\"threads\":%d,\"n\":%d,\"inner\":%lld,\"median_s\":%.9g,"
               "\"min_s\":%.9g,\"max_s\":%.9g,\"cpu_s\":%.9g,\"%s\":%.6g",
               c->name, threads, r->n, (long long)r->inner, r->median, r->min, r->max,
               r->cpu_median, key, rate);
        if (c->kind == BENCH_TRAIN)
            printf(",\"gflops\":%.6g",
                   bench_train_flop_per_sample() * BENCH_BATCH / r->median * 1e-9);
        if (o->samples)
            for (int i = 0; i < r->n; i++)
                printf("%s%.9g", i == 0 ? ",\"samples_s\":[" : ",", r->samples[i]);
        printf("%s}\n", o->samples && r->n > 0 ? "]" : "");
    } else {
        char b[4][32];
        printf("%-22s %3d %5d %10s %10s %10s %10s %8.1f %s\n", c->name, threads, r->n,
               fmt_time(b[0], 32, r->median), fmt_time(b[1], 32, r->min),
               fmt_time(b[2], 32, r->max), fmt_time(b[3], 32, r->cpu_median), rate, unit);
    }
    fflush(stdout);
}

/*
 * Thread count of the library (tg_set_num_threads(), read by GEMM) and of
 * OpenMP's default team (read by the element-wise, im2col and pooling loops,
 * which use no num_threads clause), so that "1 thread" means one thread.
 */
static int set_threads(int threads)
{
    tg_set_num_threads(threads);
#ifdef _OPENMP
    omp_set_num_threads(threads);
#endif
    return tg_get_num_threads();
}

/* ---- Peak resident memory, in a fresh process ------------------------------------ */

/* The process's peak resident set in KiB: VmHWM, else ru_maxrss. */
static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    if (f != NULL)
        fclose(f);
    if (kib < 0) {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0)
            kib = ru.ru_maxrss;
    }
    return kib;
}

/* In the child: peak before anything, RSS_STEPS training steps, peak after. */
static int rss_child(const struct bench_opts *o)
{
    long base = peak_rss_kib();
    const struct bench_case *c = NULL;
    for (size_t i = 0; i < bench_case_count(); i++)
        if (bench_case_get(i)->kind == BENCH_RSS)
            c = bench_case_get(i);
    set_threads(o->threads[0]);
    struct bench_state *s = bench_setup(c);
    if (s == NULL || bench_run(s, RSS_STEPS, NULL) < 0) {
        fprintf(stderr, "peak-rss child: %s\n", tg_last_error());
        bench_teardown(s);
        return 1;
    }
    long peak = peak_rss_kib();
    printf("%ld %ld %zu\n", base, peak, bench_tape_reserved(s));
    bench_teardown(s);
    return 0;
}

/* Run this program again with --rss-child and read its one line. */
static bool rss_spawn(const char *sub, int threads, long *base, long *peak, size_t *tape)
{
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    int fd[2];
    if (len <= 0 || pipe(fd) != 0)
        return false;
    exe[len] = '\0';
    char tbuf[16];
    char sbuf[32];
    snprintf(tbuf, sizeof(tbuf), "%d", threads);
    snprintf(sbuf, sizeof(sbuf), "%s", sub ? sub : "");
    char *argv[6] = {exe};
    int n = 1;
    if (sub != NULL)
        argv[n++] = sbuf;
    argv[n++] = "--rss-child";
    argv[n++] = "--threads";
    argv[n++] = tbuf;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], STDOUT_FILENO);
        close(fd[0]);
        close(fd[1]);
        execv(exe, argv);
        _exit(127);
    }
    close(fd[1]);
    FILE *f = pid > 0 ? fdopen(fd[0], "r") : NULL;
    bool ok = f != NULL && fscanf(f, "%ld %ld %zu", base, peak, tape) == 3;
    if (f != NULL)
        fclose(f);
    else
        close(fd[0]);
    int status = 0;
    if (pid > 0)
        waitpid(pid, &status, 0);
    return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool run_rss(const struct bench_case *c, const char *sub, int threads, bool json)
{
    long base;
    long peak;
    size_t tape;
    if (!rss_spawn(sub, threads, &base, &peak, &tape)) {
        tg_error_set(TG_ERR_STATE, "the peak-memory child process failed");
        return false;
    }
    double mib = 1.0 / 1024;
    if (json)
        printf("{\"case\":\"%s\",\"threads\":%d,\"steps\":%d,\"peak_rss_mib\":%.1f,"
               "\"base_rss_mib\":%.1f,\"tape_reserved_mib\":%.1f}\n",
               c->name, threads, RSS_STEPS, (double)peak * mib, (double)base * mib,
               (double)tape * mib * mib);
    else
        printf("%-22s %3d %5d  peak %.1f MiB (process at start %.1f MiB, tape holds %.1f MiB)\n",
               c->name, threads, RSS_STEPS, (double)peak * mib, (double)base * mib,
               (double)tape * mib * mib);
    fflush(stdout);
    return true;
}

/* ---- Main ----------------------------------------------------------------------- */

static bool
run_one(const struct bench_case *c, const char *sub, int threads, const struct bench_opts *o)
{
    threads = set_threads(threads);
    if (c->kind == BENCH_RSS)
        return run_rss(c, sub, threads, o->json);
    struct bench_result *r = malloc(sizeof(*r));
    bool ok = r != NULL && time_case(c, o, r);
    if (ok)
        print_row(c, threads, r, o);
    free(r);
    return ok;
}

int bench_main(const char *prog, const char *sub, int argc, char **argv)
{
    struct bench_opts o;
    int status = parse_opts(prog, argc, argv, &o);
    if (status >= 0)
        return status;
    if (o.rss_child)
        return rss_child(&o);
    size_t n_selected = 0;
    for (size_t i = 0; i < bench_case_count(); i++) {
        const struct bench_case *c = bench_case_get(i);
        if (!selected(c, &o))
            continue;
        n_selected++;
        if (o.list && o.json)
            printf("{\"case\":\"%s\",\"heavy\":%s,\"description\":\"%s\"}\n", c->name,
                   c->heavy ? "true" : "false", c->description);
        else if (o.list)
            printf("%-22s %s%s\n", c->name, c->description, c->heavy ? " (not in --quick)" : "");
    }
    if (n_selected == 0)
        return usage_error(prog, "no case matches '%s'", o.filter ? o.filter : "");
    if (o.list)
        return 0;

    if (!o.json)
        print_header(&o);
    status = 0;
    for (size_t i = 0; i < bench_case_count(); i++) {
        const struct bench_case *c = bench_case_get(i);
        for (int j = 0; selected(c, &o) && j < o.n_threads; j++)
            if (!run_one(c, sub, o.threads[j], &o)) {
                fprintf(stderr, "%s: case '%s' at %d threads failed: %s\n", prog, c->name,
                        o.threads[j], tg_last_error());
                status = 1;
            }
    }
    tg_set_num_threads(0);
    return status;
}
