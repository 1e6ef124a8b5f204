/* common.c - the support library's error message, CHECK's exit path and the option parser. */
#include "common.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/stat.h>

#include "sg_tensor.h" /* sg_set_num_threads */

/* ------------------------------------------------------------------ errors */

static _Thread_local char sgx_msg[1024];

int sgx_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sgx_msg, sizeof sgx_msg, fmt, ap);
    va_end(ap);
    sg_clear_error(); /* a later library failure sets its message again: newest wins */
    return code;
}

const char *sgx_last_error(void)
{
    const char *lib = sg_last_error();
    return lib[0] ? lib : sgx_msg;
}

void sgx_die(const char *expr, const char *file, int line, const char *hint)
{
    const char *msg = sgx_last_error();
    if (msg[0])
        fprintf(stderr, "error: %s\n", msg);
    else
        fprintf(stderr, "error: check failed: %s (%s:%d)\n", expr, file, line);
    if (hint)
        fprintf(stderr, "hint: %s\n", hint);
    exit(1);
}

void sgx_openmp_env(char **argv)
{
    if (getenv("OMP_WAIT_POLICY"))
        return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    setenv("GOMP_SPINCOUNT", "10000", 0);
    execv("/proc/self/exe", argv); /* returns only on failure: carry on spinning */
}

/* Physical cores among the CPUs this process may run on: the CPUs whose SMT sibling list
 * (sysfs) starts with themselves or with a CPU outside the mask, so each core counts
 * once; every allowed CPU when sysfs does not say. */
static int cores_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        return 1;
    int cpus = CPU_COUNT(&set), cores = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &set))
            continue;
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list",
                 c);
        FILE *f = fopen(path, "r");
        int first = -1;
        bool listed = f && fscanf(f, "%d", &first) == 1 && first >= 0 && first < CPU_SETSIZE;
        if (f)
            fclose(f);
        if (!listed)
            return cpus > 0 ? cpus : 1;
        if (first == c || !CPU_ISSET(first, &set))
            cores++;
    }
    return cores > 0 ? cores : 1;
}

int sgx_set_threads(int n)
{
    if (n > 0)
        return sg_set_num_threads(n);
    const char *env = getenv("SG_NUM_THREADS");
    if (env && atoi(env) > 0)
        return SG_OK;
    return sg_set_num_threads(cores_available());
}

/* ----------------------------------------------------------------- options */

static const char *metavar(const sgx_option *o)
{
    switch (o->type) {
    case SGX_OPT_INT: return "N";
    case SGX_OPT_DOUBLE: return "X";
    case SGX_OPT_STRING: return o->choices ? o->choices : "STR";
    default: return "";
    }
}

/* Levenshtein distance, capped: names are short (< 64 chars). */
static int edit_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 63 || nb > 63)
        return 99;
    int row[64];
    for (size_t j = 0; j <= nb; j++)
        row[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

static sgx_option *find_option(sgx_option *opts, const char *name, size_t len)
{
    for (sgx_option *o = opts; o->type != SGX_OPT_END; o++)
        if (o->name && strlen(o->name) == len && !strncmp(o->name, name, len))
            return o;
    return NULL;
}

static int unknown_option(const sgx_option *opts, const char *name)
{
    const char *best = NULL;
    int best_d = 3; /* suggest only close names: at most 2 edits */
    for (const sgx_option *o = opts; o->type != SGX_OPT_END; o++) {
        if (!o->name)
            continue;
        int d = edit_distance(name, o->name);
        if (d < best_d) {
            best_d = d;
            best = o->name;
        }
    }
    if (best)
        return sgx_error(SG_EINVAL, "unknown option '--%s' (did you mean '--%s'?)", name, best);
    return sgx_error(SG_EINVAL, "unknown option '--%s'", name);
}

static bool in_choices(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n))
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

static int set_value(sgx_option *o, const char *v)
{
    char *end;
    switch (o->type) {
    case SGX_OPT_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (end == v || *end || errno == ERANGE || x < INT_MIN || x > INT_MAX)
            return sgx_error(SG_EINVAL, "option '--%s' expects an integer, got '%s'", o->name, v);
        *(int *)o->dest = (int)x;
        return 0;
    }
    case SGX_OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (end == v || *end || !isfinite(x))
            return sgx_error(SG_EINVAL, "option '--%s' expects a number, got '%s'", o->name, v);
        *(double *)o->dest = x;
        return 0;
    }
    case SGX_OPT_STRING:
        if (o->choices && !in_choices(o->choices, v))
            return sgx_error(SG_EINVAL, "option '--%s' expects one of %s, got '%s'", o->name,
                             o->choices, v);
        *(const char **)o->dest = v;
        return 0;
    case SGX_OPT_BOOL: {
        static const char *const yes[] = {"true", "1", "yes", "on"};
        static const char *const no[] = {"false", "0", "no", "off"};
        for (int k = 0; k < 4; k++) {
            if (!strcmp(v, yes[k]) || !strcmp(v, no[k])) {
                *(bool *)o->dest = !strcmp(v, yes[k]);
                return 0;
            }
        }
        return sgx_error(SG_EINVAL, "option '--%s' expects true or false, got '%s'", o->name, v);
    }
    default:
        return sgx_error(SG_EINVAL, "option '--%s' has a bad table entry", o->name);
    }
}

int sgx_options_parse(sgx_option *opts, int argc, char **argv)
{
    if (!opts || argc < 0 || (argc > 0 && !argv))
        return sgx_error(SG_EINVAL, "sgx_options_parse: NULL table or argv");
    int npos = 0;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == '\0') { /* "-" alone is a positional (stdin) */
            argv[1 + npos++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return SGX_OPTIONS_HELP;
        if (a[1] != '-')
            return sgx_error(SG_EINVAL, "unknown option '%s' (options are --long)", a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        sgx_option *o = find_option(opts, name, len);
        bool negated = false;
        if (!o && len > 3 && !strncmp(name, "no-", 3)) {
            o = find_option(opts, name + 3, len - 3);
            if (o && o->type != SGX_OPT_BOOL)
                o = NULL;
            negated = o != NULL;
        }
        if (!o) {
            char buf[128];
            snprintf(buf, sizeof buf, "%.*s", (int)(len < 127 ? len : 127), name);
            return unknown_option(opts, buf);
        }
        int rc;
        if (o->type == SGX_OPT_BOOL && !eq) {
            *(bool *)o->dest = !negated;
            rc = 0;
        } else if (negated) {
            rc = sgx_error(SG_EINVAL, "option '--no-%s' takes no value", o->name);
        } else if (eq) {
            rc = set_value(o, eq + 1);
        } else if (i + 1 < argc) {
            rc = set_value(o, argv[++i]);
        } else {
            rc = sgx_error(SG_EINVAL, "option '--%s' needs a value (%s)", o->name, metavar(o));
        }
        if (rc < 0)
            return rc;
        o->given = true;
    }
    return npos;
}

static void format_default(char *buf, size_t n, const sgx_option *o)
{
    buf[0] = '\0';
    switch (o->type) {
    case SGX_OPT_INT: snprintf(buf, n, " (default %d)", *(const int *)o->dest); break;
    case SGX_OPT_DOUBLE: snprintf(buf, n, " (default %g)", *(const double *)o->dest); break;
    case SGX_OPT_STRING: {
        const char *s = *(const char *const *)o->dest;
        if (s)
            snprintf(buf, n, " (default %s)", s);
        break;
    }
    case SGX_OPT_BOOL:
        if (*(const bool *)o->dest)
            snprintf(buf, n, " (default on)");
        break;
    default: break;
    }
}

static void format_lhs(char *buf, size_t n, const sgx_option *o)
{
    if (o->type == SGX_OPT_BOOL)
        snprintf(buf, n, "--%s%s", *(const bool *)o->dest ? "[no-]" : "", o->name);
    else
        snprintf(buf, n, "--%s %s", o->name, metavar(o));
}

void sgx_options_usage(FILE *f, const sgx_option *opts, const char *usage, const char *about)
{
    char lhs[160], def[160];
    int width = 10; /* "-h, --help" */
    for (const sgx_option *o = opts; o->type != SGX_OPT_END; o++) {
        if (o->type == SGX_OPT_SECTION)
            continue;
        format_lhs(lhs, sizeof lhs, o);
        int w = (int)strlen(lhs);
        if (w > width && w <= 32) /* a very long left side gets its own line instead */
            width = w;
    }
    fprintf(f, "usage: %s\n", usage ? usage : "program [options]");
    if (about)
        fprintf(f, "\n%s\n", about);
    bool section_open = false;
    for (const sgx_option *o = opts; o->type != SGX_OPT_END; o++) {
        if (o->type == SGX_OPT_SECTION) {
            fprintf(f, "\n%s:\n", o->help ? o->help : "");
            section_open = true;
            continue;
        }
        if (!section_open) {
            fprintf(f, "\noptions:\n");
            section_open = true;
        }
        format_lhs(lhs, sizeof lhs, o);
        format_default(def, sizeof def, o);
        if ((int)strlen(lhs) > width)
            fprintf(f, "  %s\n  %*s  %s%s\n", lhs, width, "", o->help ? o->help : "", def);
        else
            fprintf(f, "  %-*s  %s%s\n", width, lhs, o->help ? o->help : "", def);
    }
    fprintf(f, "\n  %-*s  %s\n", width, "-h, --help", "show this help and exit");
}

int sgx_options_parse_or_exit(sgx_option *opts, int argc, char **argv, const char *usage,
                              const char *about)
{
    const char *prog = argc > 0 && argv[0] ? strrchr(argv[0], '/') : NULL;
    prog = prog ? prog + 1 : (argc > 0 && argv[0] ? argv[0] : "program");
    int rc = sgx_options_parse(opts, argc, argv);
    if (rc == SGX_OPTIONS_HELP) {
        sgx_options_usage(stdout, opts, usage, about);
        exit(0);
    }
    if (rc < 0) {
        fprintf(stderr, "%s: %s\ntry '%s --help'\n", prog, sgx_last_error(), prog);
        exit(2);
    }
    return rc;
}

bool sgx_option_given(const sgx_option *opts, const char *name)
{
    if (!opts || !name)
        return false;
    for (const sgx_option *o = opts; o->type != SGX_OPT_END; o++)
        if (o->name && !strcmp(o->name, name))
            return o->given;
    return false;
}

void sgx_mkdir_parent(const char *path)
{
    char dir[4096];
    if (!path || snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return;
    *slash = 0;
    /* each prefix in turn; existing ones fail with EEXIST, which is fine */
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0777);
            *p = '/';
        }
    mkdir(dir, 0777);
}
