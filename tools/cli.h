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

/* Prints "cnnviz: <message>" to stderr; returns 1 (the exit code). */
int cli_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

#endif
