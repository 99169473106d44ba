/* Class names: the cnnviz.labels metadata parsed into a list, a labels
 * file read into it, and a class a user typed resolved against it. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/file.h"
#include "engine/model.h"

/* A labels file larger than this is refused (ImageNet-21k's names take
 * under 1 MiB). */
#define LABELS_MAX_FILE ((size_t)64 << 20)

/* A WordNet id ("n01440764 ") starting a line of len bytes. */
static int wordnet_id(const char *line, size_t len)
{
    if (len <= 10 || line[0] != 'n' || line[9] != ' ')
        return 0;
    for (int k = 1; k < 9; k++)
        if (!isdigit((unsigned char)line[k]))
            return 0;
    return 1;
}

/* Walks the lines of text (cut in place when names is not NULL): a final
 * line that is empty after its newline is no label. Returns the count. */
static size_t split(char *text, const char **names)
{
    size_t n = 0;
    char *p = text;
    while (*p) {
        char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char *line = p;
        p = e ? e + 1 : p + len;
        if (len && line[len - 1] == '\r')
            len--;
        if (wordnet_id(line, len)) {
            line += 10;
            len -= 10;
        }
        if (!e && len == 0)
            break;
        if (names) {
            line[len] = '\0'; /* the newline or the carriage return */
            names[n] = line;
        }
        n++;
    }
    return n;
}

cnv_status cnv_labels_parse(const char *text, cnv_labels *l, cnv_err *e)
{
    /* Counted on the const text first: nothing is allocated for a text
     * with too many lines. */
    size_t n = split((char *)text, NULL);
    if (n > CNV_MAX_LABELS)
        return cnv_fail(e, CNV_ERR_UNSUPPORTED,
                        "%s has %zu lines; at most %d class names are supported", CNV_META_LABELS, n,
                        CNV_MAX_LABELS);
    cnv_labels out = {cnv_strdup(text), cnv_calloc(n + 1, sizeof(char *)), (int)n};
    if (!out.text || !out.names) {
        cnv_labels_free(&out);
        return cnv_fail(e, CNV_ERR_NOMEM, "out of memory for %zu class names", n);
    }
    split(out.text, out.names);
    cnv_labels_free(l);
    *l = out;
    return CNV_OK;
}

void cnv_labels_free(cnv_labels *l)
{
    cnv_free(l->text);
    cnv_free(l->names);
    memset(l, 0, sizeof *l);
}

int cnv_model_labels(const cnv_model *m, const char *const **names)
{
    if (names)
        *names = m && m->labels.n ? m->labels.names : NULL;
    return m ? m->labels.n : 0;
}

cnv_status cnv_model_load_labels(cnv_model *m, const char *path)
{
    if (!m)
        return CNV_ERR_INVALID_ARG;
    if (!path)
        return cnv_fail(&m->err, CNV_ERR_INVALID_ARG, "no labels file given");
    void *text;
    size_t size;
    cnv_status st = cnv_read_file(path, LABELS_MAX_FILE, &text, &size, &m->err);
    if (st != CNV_OK)
        return st;
    st = cnv_model_set_meta(m, CNV_META_LABELS, text);
    cnv_free(text);
    if (st != CNV_OK)
        cnv_err_prefix(&m->err, "labels file '%s'", path);
    return st;
}

cnv_status cnv_model_find_class(const cnv_model *m, const char *text, int *cls, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!m || !text || !cls)
        return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_INVALID_ARG, "no class given");
    int n = m->labels.n;
    char *end;
    errno = 0;
    long k = strtol(text, &end, 10);
    if (end != text && !*end && !errno) {
        if (k < 0 || k > INT_MAX || (n && k >= n))
            return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_NOT_FOUND,
                                   "class %ld is out of range (the model has %d classes)", k, n);
        *cls = (int)k;
        return CNV_OK;
    }
    size_t len = strlen(text);
    for (int i = 0; i < n; i++) {
        const char *l = m->labels.names[i];
        if (!strcasecmp(l, text) || (len == strcspn(l, ",") && !strncasecmp(l, text, len))) {
            *cls = i;
            return CNV_OK;
        }
    }
    return cnv_errbuf_fail(errbuf, errlen, CNV_ERR_NOT_FOUND, "no class named '%s'%s", text,
                           n ? "" : " (the model has no labels; give a number)");
}
