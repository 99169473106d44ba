/* Shared pieces of the cnnviz program: the subcommand table and helpers
 * for options, model loading and error reporting. */
#ifndef CNV_CLI_H
#define CNV_CLI_H

#include "cnnviz.h"

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv); /* argv[0] is the subcommand */
} cli_command;

/* Prints "cnnviz: <message>" to stderr; returns 1, the exit code of a
 * failure while running. */
int cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* The same for a mistake in the command line; returns 2, its exit code. */
int cli_usage_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* The one of n names closest to `typed` (case-insensitive edit distance,
 * a swap of neighbours counting one) when it is close: at most a third of
 * its length away, at least 1, and nearer than any other. Else NULL. */
const char *cli_nearest(const char *typed, const char *const *names, int n);

#endif
