/* Internal foundation shared by every source file: error messages,
 * checked allocation (through the user's allocator hook) and overflow-checked
 * size arithmetic. Nothing here prints, exits or asserts. */
#ifndef CNV_BASE_H
#define CNV_BASE_H

#include <stddef.h>
#include <stdint.h>

#include "cnnviz.h"

#if defined(__GNUC__)
#define CNV_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CNV_PRINTF(f, a)
#endif

/* A message buffer carried by every handle; functions that fail fill it. */
#define CNV_ERR_LEN 512
typedef struct cnv_err {
    char msg[CNV_ERR_LEN];
} cnv_err;

/* Formats a message into err (NULL is allowed) and returns st, so a failure
 * path reads `return cnv_fail(err, CNV_ERR_FORMAT, "...", ...);`. */
cnv_status cnv_fail(cnv_err *err, cnv_status st, const char *fmt, ...) CNV_PRINTF(3, 4);
void cnv_err_clear(cnv_err *err);
/* The same for the caller buffers of handle-less functions (images, model
 * queries): formats into buf (NULL or len 0: nothing) and returns st. */
cnv_status cnv_errbuf_fail(char *buf, size_t len, cnv_status st, const char *fmt, ...) CNV_PRINTF(4, 5);
/* Prepends "prefix: " to an existing message (adds context on the way up). */
void cnv_err_prefix(cnv_err *err, const char *fmt, ...) CNV_PRINTF(2, 3);

/* Every allocation of the library goes through these, so the allocator hook
 * (cnv_set_allocator) sees all of them. cnv_free(NULL) is a no-op. */
void *cnv_malloc(size_t n);
void *cnv_calloc(size_t count, size_t size); /* zeroed; NULL on overflow */
void cnv_free(void *p);
char *cnv_strdup(const char *s);
char *cnv_strndup(const char *s, size_t n);
/* Grows the array *p (of *cap elements of size elem) to hold at least need
 * elements, doubling; returns 0 on overflow or allocation failure, leaving
 * *p and *cap as they were. */
int cnv_grow(void **p, size_t *cap, size_t need, size_t elem);

/* Overflow-checked products and sums: return 0 and leave *out unspecified
 * when the result does not fit. */
int cnv_mul_size(size_t a, size_t b, size_t *out);
int cnv_add_size(size_t a, size_t b, size_t *out);
int cnv_mul_i64(int64_t a, int64_t b, int64_t *out);

/* Largest element count of any single tensor the library will allocate:
 * 2^31 - 1 keeps every count a valid BLAS int and far above real models. */
#define CNV_MAX_ELEMS ((int64_t)INT32_MAX)

#endif
