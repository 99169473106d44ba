/* A map from strings to non-negative ints (open addressing, linear
 * probing): the model's index of tensor names and metadata keys, so that
 * building a model of n names costs O(n), not O(n^2). Keys are borrowed:
 * their owner keeps them alive and unchanged while they are in the map. */
#ifndef CNV_STRMAP_H
#define CNV_STRMAP_H

#include <stddef.h>

typedef struct cnv_strmap {
    const char **keys; /* cap slots; NULL: empty */
    int *vals;
    size_t cap, n;
} cnv_strmap;

/* The value of key, or -1. */
int cnv_strmap_get(const cnv_strmap *m, const char *key);
/* Sets key to val (>= 0), replacing a value it had. Returns 0 when memory
 * ran out (the map is unchanged), else 1. */
int cnv_strmap_put(cnv_strmap *m, const char *key, int val);
/* Removes key (a no-op when absent). */
void cnv_strmap_del(cnv_strmap *m, const char *key);
void cnv_strmap_free(cnv_strmap *m);

#endif
