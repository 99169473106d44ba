/* String -> int map (see strmap.h). */
#include "core/strmap.h"

#include <stdint.h>
#include <string.h>

#include "core/base.h"

/* FNV-1a, 64-bit. */
static uint64_t hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* The slot of key, or of the empty slot where it would go. cap is a
 * power of two and the map is never full. */
static size_t find(const cnv_strmap *m, const char *key)
{
    size_t mask = m->cap - 1, i = (size_t)hash(key) & mask;
    while (m->keys[i] && strcmp(m->keys[i], key) != 0)
        i = (i + 1) & mask;
    return i;
}

int cnv_strmap_get(const cnv_strmap *m, const char *key)
{
    if (!m->n)
        return -1;
    size_t i = find(m, key);
    return m->keys[i] ? m->vals[i] : -1;
}

/* Rehashes into cap slots. */
static int resize(cnv_strmap *m, size_t cap)
{
    cnv_strmap big = {cnv_calloc(cap, sizeof *big.keys), cnv_calloc(cap, sizeof *big.vals), cap, m->n};
    if (!big.keys || !big.vals) {
        cnv_free(big.keys);
        cnv_free(big.vals);
        return 0;
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) {
            size_t j = find(&big, m->keys[i]);
            big.keys[j] = m->keys[i];
            big.vals[j] = m->vals[i];
        }
    cnv_free(m->keys);
    cnv_free(m->vals);
    *m = big;
    return 1;
}

int cnv_strmap_put(cnv_strmap *m, const char *key, int val)
{
    /* at most half full: probes stay short */
    if ((m->n + 1) * 2 > m->cap && !resize(m, m->cap ? m->cap * 2 : 16))
        return 0;
    size_t i = find(m, key);
    if (!m->keys[i]) {
        m->keys[i] = key;
        m->n++;
    }
    m->vals[i] = val;
    return 1;
}

void cnv_strmap_del(cnv_strmap *m, const char *key)
{
    if (!m->n)
        return;
    size_t mask = m->cap - 1, i = find(m, key);
    if (!m->keys[i])
        return;
    /* Backward-shift deletion: entries after the hole that could sit in it
     * (their home slot is not strictly between the hole and them) move up,
     * so that every probe sequence stays unbroken without tombstones. */
    for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
        size_t home = (size_t)hash(m->keys[j]) & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[i] = NULL;
    m->n--;
}

void cnv_strmap_free(cnv_strmap *m)
{
    cnv_free(m->keys);
    cnv_free(m->vals);
    memset(m, 0, sizeof *m);
}
