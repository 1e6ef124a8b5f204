/*
 * common.h - what every example program shares: CHECK() for fatal errors and a small
 * table-driven command-line parser. Part of the static library sg_examples_support, not of
 * libseqgrad: examples may print and exit, the library never does. Names use the prefix
 * `sgx_` so they can never clash with the library's `sg_`.
 *
 *     int hidden = 256;  double lr = 1e-3;  const char *cell = "gru";  bool help_me = false;
 *     sgx_option opts[] = {
 *         SGX_SECTION("Model"),
 *         SGX_INT("hidden", &hidden, "hidden units per layer"),
 *         SGX_CHOICE("cell", &cell, "gru|lstm", "recurrent cell"),
 *         SGX_SECTION("Training"),
 *         SGX_DOUBLE("lr", &lr, "learning rate"),
 *         SGX_BOOL("verbose", &help_me, "print more"),
 *         SGX_END,
 *     };
 *     int npos = sgx_options_parse_or_exit(opts, argc, argv, "train [options]", NULL);
 *     if (!sgx_option_given(opts, "lr")) lr = config_lr;   // named config, overridable
 *     CHECK(sg_params_load(p, path) == SG_OK);             // exits 1 with sg_last_error()
 *
 * Syntax: `--name value`, `--name=value`; booleans `--flag`, `--no-flag`, `--flag=true|false`;
 * `--` ends the options. Non-option arguments are moved, in order, to argv[1..npos].
 * Defaults are whatever the destination variables hold before parsing; --help shows them.
 */
#ifndef SGX_COMMON_H
#define SGX_COMMON_H

#include <stdbool.h>
#include <stdio.h>

#include "sg_error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ errors */

/* The message of the most recent failure: this library's own message if an sgx_ function
 * failed after the last failing libseqgrad call, else sg_last_error(); never NULL. sgx_
 * functions report failures as negative SG_E* codes (SG_EIO, SG_EINVAL, SG_ENOMEM). */
const char *sgx_last_error(void);

/* Records a support-library error message (printf-style) and returns `code`. Clears the
 * libseqgrad message so sgx_last_error() shows the newest of the two. */
int sgx_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "error: <sgx_last_error()>" (or the failed expression when no message was
 * recorded), then "hint: <hint>" when hint is not NULL, to stderr, and exits with 1. */
_Noreturn void sgx_die(const char *expr, const char *file, int line, const char *hint);

/* CHECK(expr): expr must be true (non-zero / non-NULL), else print the error and exit 1.
 * CHECK_HINT(expr, hint): the same with a hint line telling the user what to try. */
#define CHECK(expr) CHECK_HINT(expr, NULL)
#define CHECK_HINT(expr, hint)                                                              \
    do {                                                                                    \
        if (!(expr))                                                                        \
            sgx_die(#expr, __FILE__, __LINE__, (hint));                                     \
    } while (0)

/* Idle BLIS (OpenMP) threads must sleep, not spin, or they fight the compute threads
 * for the cores; libgomp reads OMP_WAIT_POLICY / GOMP_SPINCOUNT once, when it loads.
 * Call first in main(): when OMP_WAIT_POLICY is unset it sets PASSIVE with a short spin
 * and re-executes the program (same argv), so it takes effect. */
void sgx_openmp_env(char **argv);

/* The tools' --threads: n > 0 is used as given; 0 (or less) means SG_NUM_THREADS when it
 * is set (the library reads it), else one thread per physical core this process may run
 * on (sched_getaffinity; SMT siblings counted once, per /sys/devices/system/cpu), as
 * PyTorch does. Returns SG_OK, or the error of sg_set_num_threads. */
int sgx_set_threads(int n);

/* Creates the folders above the file `path` names (mkdir -p of its parent), so that
 * `--save runs/a/model.h5` works in a fresh folder. Best effort: a folder that cannot be
 * made is left for the file's own open to report, with its name. */
void sgx_mkdir_parent(const char *path);

/* ----------------------------------------------------------------- options */

typedef enum sgx_opt_type {
    SGX_OPT_END = 0,  /* terminates a table */
    SGX_OPT_SECTION,  /* a heading in --help; `help` is its title */
    SGX_OPT_INT,      /* dest: int *          value: decimal integer within int */
    SGX_OPT_DOUBLE,   /* dest: double *       value: finite number */
    SGX_OPT_STRING,   /* dest: const char **  value: any string (points into argv) */
    SGX_OPT_BOOL,     /* dest: bool *         --name, --no-name, --name=true|false|1|0 */
    SGX_OPT_TYPE_COUNT
} sgx_opt_type;

typedef struct sgx_option {
    sgx_opt_type type;
    const char *name;    /* without the dashes: "time-budget" */
    void *dest;          /* holds the default before parsing, the value after */
    const char *help;    /* one line */
    const char *choices; /* strings only: allowed values "gru|lstm", or NULL for any */
    bool given;          /* set by the parser when the option appears on the command line */
} sgx_option;

#define SGX_INT(name, dest, help) {SGX_OPT_INT, (name), (dest), (help), NULL, false}
#define SGX_DOUBLE(name, dest, help) {SGX_OPT_DOUBLE, (name), (dest), (help), NULL, false}
#define SGX_STRING(name, dest, help) {SGX_OPT_STRING, (name), (dest), (help), NULL, false}
#define SGX_CHOICE(name, dest, choices, help) {SGX_OPT_STRING, (name), (dest), (help), (choices), false}
#define SGX_BOOL(name, dest, help) {SGX_OPT_BOOL, (name), (dest), (help), NULL, false}
#define SGX_SECTION(title) {SGX_OPT_SECTION, NULL, NULL, (title), NULL, false}
#define SGX_END {SGX_OPT_END, NULL, NULL, NULL, NULL, false}

/* sgx_options_parse result besides npos >= 0. */
enum { SGX_OPTIONS_HELP = -100 };

/* Parses argv[1..argc-1] against the table (terminated by SGX_END). Returns the number of
 * positional arguments (moved to argv[1..npos]), SGX_OPTIONS_HELP when --help/-h was seen, or
 * SG_EINVAL with a message naming the option (unknown option, with a suggestion when one is
 * close; missing value; bad value; value not among the choices). Destinations are written as
 * options are read, so on failure some may already hold new values. */
int sgx_options_parse(sgx_option *opts, int argc, char **argv);

/* As sgx_options_parse, but on --help prints the usage to stdout and exits 0, on an error
 * prints "<prog>: <message>" and "try '<prog> --help'" to stderr and exits 2. `usage` is the
 * first help line ("train_seq2seq [options]"), `about` an optional paragraph after it. */
int sgx_options_parse_or_exit(sgx_option *opts, int argc, char **argv, const char *usage,
                              const char *about);

/* Writes the help text: usage, about, then one aligned line per option with its default. */
void sgx_options_usage(FILE *f, const sgx_option *opts, const char *usage, const char *about);

/* True if option `name` appeared on the command line (false for unknown names). */
bool sgx_option_given(const sgx_option *opts, const char *name);

#ifdef __cplusplus
}
#endif
#endif
