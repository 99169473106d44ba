/* Error messages, allocation through the user's hook, the memory limit of
 * plans, checked size arithmetic. */
#define _DEFAULT_SOURCE /* sysconf(_SC_PHYS_PAGES) */
#include "core/base.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static cnv_allocator g_alloc; /* all NULL: use the C library */

void cnv_set_allocator(const cnv_allocator *a)
{
    if (a && a->malloc_fn && a->free_fn)
        g_alloc = *a;
    else
        memset(&g_alloc, 0, sizeof g_alloc);
}

/* ------------------------------------------------------ memory limit */

static _Atomic size_t g_memory_limit; /* 0: not chosen yet, or reset */

/* "123", "512M", "4G": bytes; 0 when malformed or overflowing. */
static size_t parse_bytes(const char *v)
{
    char *end;
    unsigned long long n = v && *v ? strtoull(v, &end, 10) : 0;
    if (!n || !v || *v == '-')
        return 0;
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10, end++;
    else if (*end == 'M' || *end == 'm')
        shift = 20, end++;
    else if (*end == 'G' || *end == 'g')
        shift = 30, end++;
    if (*end || n > (SIZE_MAX >> shift))
        return 0;
    return (size_t)n << shift;
}

static size_t default_memory_limit(void)
{
    size_t env = parse_bytes(getenv("CNNVIZ_MAX_MEMORY"));
    if (env)
        return env;
    size_t half = (size_t)1 << 31; /* where the system does not say */
#ifdef _SC_PHYS_PAGES
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page > 0 && (unsigned long long)pages <= SIZE_MAX / (size_t)page)
        half = (size_t)pages * (size_t)page / 2;
#endif
    return half ? half : 1;
}

void cnv_set_memory_limit(size_t bytes)
{
    atomic_store(&g_memory_limit, bytes);
}

size_t cnv_get_memory_limit(void)
{
    size_t v = atomic_load(&g_memory_limit);
    return v ? v : default_memory_limit();
}

/* ---------------------------------------------------------- allocation */

void *cnv_malloc(size_t n)
{
    if (n == 0)
        n = 1;
    return g_alloc.malloc_fn ? g_alloc.malloc_fn(g_alloc.user, n) : malloc(n);
}

void *cnv_calloc(size_t count, size_t size)
{
    size_t n;
    if (!cnv_mul_size(count, size, &n))
        return NULL;
    if (!g_alloc.malloc_fn) /* the C library's: large blocks come zeroed, untouched */
        return calloc(n ? n : 1, 1);
    void *p = cnv_malloc(n);
    if (p)
        memset(p, 0, n);
    return p;
}

int cnv_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 1;
    size_t ncap = *cap ? *cap : 8;
    while (ncap < need) {
        if (!cnv_mul_size(ncap, 2, &ncap))
            return 0;
    }
    size_t bytes, old;
    if (!cnv_mul_size(ncap, elem, &bytes))
        return 0;
    void *q = cnv_malloc(bytes);
    if (!q)
        return 0;
    old = *cap * elem; /* cannot overflow: it was allocated before */
    if (*p && old)
        memcpy(q, *p, old);
    cnv_free(*p);
    *p = q;
    *cap = ncap;
    return 1;
}

void cnv_free(void *p)
{
    if (!p)
        return;
    if (g_alloc.free_fn)
        g_alloc.free_fn(g_alloc.user, p);
    else
        free(p);
}

char *cnv_strndup(const char *s, size_t n)
{
    char *d = cnv_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *cnv_strdup(const char *s)
{
    return cnv_strndup(s, strlen(s));
}

int cnv_mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

int cnv_add_size(size_t a, size_t b, size_t *out)
{
    if (b > SIZE_MAX - a)
        return 0;
    *out = a + b;
    return 1;
}

int cnv_mul_i64(int64_t a, int64_t b, int64_t *out)
{
    if (a < 0 || b < 0)
        return 0;
    if (a != 0 && b > INT64_MAX / a)
        return 0;
    *out = a * b;
    return 1;
}

cnv_status cnv_fail(cnv_err *err, cnv_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

cnv_status cnv_errbuf_fail(char *buf, size_t len, cnv_status st, const char *fmt, ...)
{
    if (buf && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
    }
    return st;
}

void cnv_err_clear(cnv_err *err)
{
    if (err)
        err->msg[0] = '\0';
}

void cnv_err_prefix(cnv_err *err, const char *fmt, ...)
{
    if (!err)
        return;
    char old[CNV_ERR_LEN];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < sizeof err->msg)
        snprintf(err->msg + k, sizeof err->msg - (size_t)k, ": %s", old);
}

const char *cnv_status_string(cnv_status st)
{
    switch (st) {
    case CNV_OK: return "ok";
    case CNV_ERR_INVALID_ARG: return "invalid argument";
    case CNV_ERR_NOMEM: return "out of memory";
    case CNV_ERR_IO: return "input/output error";
    case CNV_ERR_FORMAT: return "malformed file";
    case CNV_ERR_UNSUPPORTED: return "unsupported";
    case CNV_ERR_SHAPE: return "shape mismatch";
    case CNV_ERR_NOT_FOUND: return "not found";
    case CNV_ERR_STATE: return "call out of order";
    case CNV_ERR_CANCELLED: return "cancelled";
    }
    return "unknown status";
}
