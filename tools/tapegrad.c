/*
 * The tapegrad command-line program: global options and dispatch to the
 * subcommands of the table below. A new subcommand is one row there and one
 * cmd-<name>.c file.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifndef TG_VERSION
#define TG_VERSION "unknown"
#endif

struct command {
    const char *name;
    const char *summary;
    cli_command_fn run;
};

static const struct command commands[] = {
        {"train", "train a model on Fashion-MNIST", cmd_train},
        {"eval", "evaluate a checkpoint on the Fashion-MNIST test set", cmd_eval},
        {"gradcheck", "check every op's backward against finite differences", cmd_gradcheck},
        {"bench", "time the kernels, a training step and the tape's overhead", cmd_bench},
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: tapegrad COMMAND [OPTIONS]\n"
               "       tapegrad --help | --version\n\nCommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'tapegrad COMMAND --help' for a command's options.\n");
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "tapegrad: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (strcmp(cmd, "tapegrad") == 0)
        fprintf(stderr, "\nTry 'tapegrad --help'.\n");
    else
        fprintf(stderr, "\nTry 'tapegrad %s --help'.\n", cmd);
    return CLI_EXIT_USAGE;
}

bool cli_parse_int(
        const char *cmd, const char *opt, const char *text, long lo, long hi, long *value)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        cli_usage_error(cmd, "%s: '%s' is not an integer from %ld to %ld", opt, text, lo, hi);
        return false;
    }
    *value = v;
    return true;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("tapegrad", "no command given");
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return EXIT_SUCCESS;
    }
    if (strcmp(name, "--version") == 0) {
        printf("tapegrad %s\n", TG_VERSION);
        return EXIT_SUCCESS;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    if (name[0] == '-')
        return cli_usage_error("tapegrad", "unknown option '%s'", name);
    return cli_usage_error("tapegrad", "unknown command '%s'", name);
}
