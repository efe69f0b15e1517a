/*
 * `tapegrad gradcheck`: run the gradient checker over the case table of
 * gc-cases.c, several drawn shapes per case, and print one line (or one JSON
 * object) per check. Exits 1 when any check fails or cannot run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "gc-cases.h"

#define CMD       "gradcheck"
#define MAX_OPS   32
#define MAX_SEEDS 100000
#define ERR_SIZE  256

struct gc_opts {
    bool json;
    bool list;
    long n_seeds;
    int n_ops;
    const char *ops[MAX_OPS];
};

static void usage(void)
{
    printf("Usage: tapegrad gradcheck [--json] [--seeds N] [--op NAME]... [--list]\n\n"
           "Check the backward of every built-in op against central finite differences,\n"
           "on N random shapes per case (seeds 1 to N).\n\n"
           "  --json       one JSON object per line instead of a table\n"
           "  --seeds N    shapes drawn per case (default 3)\n"
           "  --op NAME    only the cases of NAME: a case (conv2d_groups) or an op\n"
           "               (conv2d or tg_conv2d); may be repeated\n"
           "  --list       list the cases and exit\n"
           "  -h, --help   this help\n\n"
           "Exit status: 0 when every check passes, 1 when one fails, 2 for a bad command line.\n");
}

/* The value of an option given as "--opt VALUE" or "--opt=VALUE"; NULL if absent. */
static const char *option_value(int argc, char **argv, int *i, const char *opt, bool *bad)
{
    size_t len = strlen(opt);
    if (strncmp(argv[*i], opt, len) != 0)
        return NULL;
    if (argv[*i][len] == '=')
        return argv[*i] + len + 1;
    if (argv[*i][len] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        cli_usage_error(CMD, "%s needs a value", opt);
        *bad = true;
        return NULL;
    }
    return argv[++*i];
}

static bool known_op(const char *name)
{
    for (int c = 0; c < gc_n_cases; c++)
        if (gc_case_matches(&gc_cases[c], name))
            return true;
    return false;
}

/* Fill o from the command line; returns -1 to go on, else an exit status. */
static int parse(int argc, char **argv, struct gc_opts *o)
{
    for (int i = 1; i < argc; i++) {
        bool bad = false;
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage();
            return EXIT_SUCCESS;
        } else if (strcmp(argv[i], "--json") == 0) {
            o->json = true;
        } else if (strcmp(argv[i], "--list") == 0) {
            o->list = true;
        } else if ((v = option_value(argc, argv, &i, "--seeds", &bad)) != NULL) {
            if (!cli_parse_int(CMD, "--seeds", v, 1, MAX_SEEDS, &o->n_seeds))
                return CLI_EXIT_USAGE;
        } else if (!bad && (v = option_value(argc, argv, &i, "--op", &bad)) != NULL) {
            if (!known_op(v))
                return cli_usage_error(CMD, "--op: no case or op named '%s' (see --list)", v);
            if (o->n_ops == MAX_OPS)
                return cli_usage_error(CMD, "--op given more than %d times", MAX_OPS);
            o->ops[o->n_ops++] = v;
        } else if (bad) {
            return CLI_EXIT_USAGE;
        } else {
            return cli_usage_error(CMD, "unknown option '%s'", argv[i]);
        }
    }
    return -1;
}

static bool selected(const struct gc_opts *o, const struct gc_case *c)
{
    if (o->n_ops == 0)
        return true;
    for (int i = 0; i < o->n_ops; i++)
        if (gc_case_matches(c, o->ops[i]))
            return true;
    return false;
}

static const char *verdict(enum tg_status st, const struct gc_outcome *out)
{
    if (st != TG_OK)
        return "ERROR";
    return out->res.passed ? "PASS" : "FAIL";
}

static void print_json(const struct gc_case *c,
                       uint64_t seed,
                       enum tg_status st,
                       const struct gc_outcome *out,
                       const char *err)
{
    cJSON *j = cJSON_CreateObject();
    if (j == NULL)
        return;
    const struct tg_gradcheck_result *r = &out->res;
    cJSON_AddStringToObject(j, "case", c->name);
    cJSON_AddStringToObject(j, "op", c->op);
    cJSON_AddNumberToObject(j, "seed", (double)seed);
    cJSON_AddStringToObject(j, "shape", out->shape);
    cJSON_AddStringToObject(j, "result", verdict(st, out));
    if (st != TG_OK) {
        cJSON_AddStringToObject(j, "status", tg_status_str(st));
        cJSON_AddStringToObject(j, "error", err);
    } else {
        cJSON_AddStringToObject(j, "mode", out->projected ? "projection" : "full");
        cJSON_AddNumberToObject(j, "checked", (double)r->n_checked);
        cJSON_AddNumberToObject(j, "max_rel_err", r->max_rel_err);
        cJSON_AddNumberToObject(j, "max_abs_err", r->max_abs_err);
        cJSON_AddNumberToObject(j, "worst_input", r->worst_input);
        cJSON_AddNumberToObject(j, "worst_index", (double)r->worst_index);
        cJSON_AddNumberToObject(j, "analytic", r->analytic);
        cJSON_AddNumberToObject(j, "numeric", r->numeric);
    }
    char *text = cJSON_PrintUnformatted(j);
    if (text != NULL)
        printf("%s\n", text);
    cJSON_free(text);
    cJSON_Delete(j);
}

static void print_line(const struct gc_case *c,
                       enum tg_status st,
                       const struct gc_outcome *out,
                       const char *err)
{
    const struct tg_gradcheck_result *r = &out->res;
    if (st != TG_OK) {
        printf("%-30s %-50s %10s  ERROR %s\n", c->name, out->shape, "-", err);
        return;
    }
    printf("%-30s %-50s %10.3e  %s", c->name, out->shape, r->max_rel_err, verdict(st, out));
    if (!r->passed && r->worst_input >= 0)
        printf(" (input %d element %lld: analytic %.7g, numeric %.7g)", r->worst_input,
               (long long)r->worst_index, r->analytic, r->numeric);
    else if (!r->passed)
        printf(" (direction %lld: analytic %.7g, numeric %.7g)", (long long)r->worst_index,
               r->analytic, r->numeric);
    printf("\n");
}

static void list_cases(const struct gc_opts *o)
{
    for (int c = 0; c < gc_n_cases; c++)
        if (selected(o, &gc_cases[c]))
            printf("%-30s %s\n", gc_cases[c].name, gc_cases[c].op);
}

int cmd_gradcheck(int argc, char **argv)
{
    struct gc_opts o = {.n_seeds = 3};
    int status = parse(argc, argv, &o);
    if (status >= 0)
        return status;
    if (o.list) {
        list_cases(&o);
        return EXIT_SUCCESS;
    }

    long n_run = 0, n_bad = 0;
    if (!o.json)
        printf("%-30s %-50s %10s  %s\n", "case", "shape", "rel err", "result");
    for (int c = 0; c < gc_n_cases; c++) {
        if (!selected(&o, &gc_cases[c]))
            continue;
        for (uint64_t seed = 1; seed <= (uint64_t)o.n_seeds; seed++) {
            struct gc_outcome out;
            char err[ERR_SIZE] = "";
            tg_clear_error();
            enum tg_status st = gc_case_run(&gc_cases[c], seed, &out);
            if (st != TG_OK)
                snprintf(err, sizeof(err), "%s", tg_last_error());
            if (o.json)
                print_json(&gc_cases[c], seed, st, &out, err);
            else
                print_line(&gc_cases[c], st, &out, err);
            n_run++;
            n_bad += st != TG_OK || !out.res.passed;
        }
    }
    if (!o.json)
        printf("%ld checks, %ld passed, %ld failed\n", n_run, n_run - n_bad, n_bad);
    return n_bad > 0 ? CLI_EXIT_FAILURE : EXIT_SUCCESS;
}
