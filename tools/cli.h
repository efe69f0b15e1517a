/*
 * Private declarations of the tapegrad command-line program: one entry point
 * per subcommand, and the shared way of refusing a bad command line.
 */
#ifndef TAPEGRAD_TOOLS_CLI_H
#define TAPEGRAD_TOOLS_CLI_H

#include <tapegrad/common.h>

/** Exit status of a run whose checks or work failed. */
#define CLI_EXIT_FAILURE 1
/** Exit status of a bad command line. */
#define CLI_EXIT_USAGE 2

/**
 * A subcommand: argv[0] is the subcommand's name, the options follow.
 * @return the process exit status: 0, CLI_EXIT_FAILURE or CLI_EXIT_USAGE.
 */
typedef int (*cli_command_fn)(int argc, char **argv);

/** `tapegrad train`: train a model on Fashion-MNIST. */
int cmd_train(int argc, char **argv);

/** `tapegrad eval`: evaluate a checkpoint on the Fashion-MNIST test set. */
int cmd_eval(int argc, char **argv);

/** `tapegrad gradcheck`: check every op's backward against finite differences. */
int cmd_gradcheck(int argc, char **argv);

/** `tapegrad bench`: time the kernels, a training step and the tape's overhead. */
int cmd_bench(int argc, char **argv);

/**
 * Report a bad command line on stderr as one line, then a hint naming the
 * help option of cmd ("tapegrad" or a subcommand).
 * @return CLI_EXIT_USAGE.
 */
int cli_usage_error(const char *cmd, const char *fmt, ...) TG_PRINTF(2, 3);

/**
 * Parse a decimal integer in [lo, hi] given to option opt of cmd.
 * @return true with *value set, or false after cli_usage_error().
 */
bool cli_parse_int(
        const char *cmd, const char *opt, const char *text, long lo, long hi, long *value);

#endif
