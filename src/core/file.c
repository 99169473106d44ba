/* Whole-file reads with a cap and atomic writes (see file.h). */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A larger buffer for a read that filled `cap` bytes: twice as large, but
 * never above max + 1 (one byte past the cap shows the file exceeds it). */
static size_t next_cap(size_t cap, size_t max)
{
    size_t c;
    if (!cnv_mul_size(cap, 2, &c) || c > max)
        c = max + 1;
    return c > cap ? c : cap + 1;
}

cnv_status cnv_read_file(const char *path, size_t max, void **data, size_t *size, cnv_err *e)
{
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return cnv_fail(e, CNV_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISFIFO(sb.st_mode)) {
        fclose(f);
        return cnv_fail(e, CNV_ERR_IO, "cannot read '%s': %s", path,
                        S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
    }
    /* A regular file is read into a buffer of its size plus one (one
     * pass, no copies); a pipe, or a file that grows meanwhile, doubles
     * the buffer. A read stops short of the buffer's end, so there is
     * always room for the NUL. */
    size_t cap = 65536;
    if (S_ISREG(sb.st_mode) && sb.st_size >= 0)
        cap = (uint64_t)sb.st_size < max ? (size_t)sb.st_size + 1 : max + 1;
    else if (cap > max)
        cap = max + 1;
    unsigned char *p = cnv_malloc(cap);
    size_t n = 0;
    cnv_status st = p ? CNV_OK : cnv_fail(e, CNV_ERR_NOMEM, "'%s': out of memory reading the file", path);
    while (st == CNV_OK) {
        n += fread(p + n, 1, cap - n, f);
        if (n > max) {
            st = cnv_fail(e, CNV_ERR_UNSUPPORTED, "'%s' is larger than the %zu bytes accepted", path, max);
        } else if (n < cap) { /* a short read: the end, or an error */
            if (ferror(f))
                st = cnv_fail(e, CNV_ERR_IO, "cannot read '%s': %s", path, strerror(errno ? errno : EIO));
            else if (feof(f))
                break;
        } else {
            size_t ncap = next_cap(cap, max);
            unsigned char *q = cnv_malloc(ncap);
            if (!q) {
                st = cnv_fail(e, CNV_ERR_NOMEM, "'%s': out of memory reading the file", path);
                break;
            }
            memcpy(q, p, n);
            cnv_free(p);
            p = q;
            cap = ncap;
        }
    }
    fclose(f);
    if (st != CNV_OK) {
        cnv_free(p);
        return st;
    }
    p[n] = 0;
    *data = p;
    *size = n;
    return CNV_OK;
}

static atomic_uint g_tmp_counter;

cnv_status cnv_tmpfile_open(cnv_tmpfile *t, const char *path, cnv_err *e)
{
    memset(t, 0, sizeof *t);
    if (!path || !*path)
        return cnv_fail(e, CNV_ERR_INVALID_ARG, "empty output path");
    size_t plen = strlen(path), cap;
    if (!cnv_add_size(plen, 64, &cap))
        return cnv_fail(e, CNV_ERR_NOMEM, "output path too long");
    t->path = cnv_strdup(path);
    t->tmp_path = cnv_malloc(cap);
    if (!t->path || !t->tmp_path) {
        cnv_tmpfile_abort(t);
        return cnv_fail(e, CNV_ERR_NOMEM, "out of memory");
    }
    /* open(O_EXCL) rather than mkstemp: the file gets the usual 0666 &
     * ~umask permissions, and a name taken by another writer is retried. */
    int fd = -1;
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        unsigned n = atomic_fetch_add(&g_tmp_counter, 1u);
        snprintf(t->tmp_path, cap, "%s.%ld.%u.tmp", path, (long)getpid(), n);
        fd = open(t->tmp_path, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        int err = errno;
        cnv_tmpfile_abort(t);
        return cnv_fail(e, CNV_ERR_IO, "cannot write '%s': %s", path, strerror(err));
    }
    t->f = fdopen(fd, "wb");
    if (!t->f) {
        int err = errno;
        close(fd);
        unlink(t->tmp_path);
        cnv_tmpfile_abort(t);
        return cnv_fail(e, CNV_ERR_IO, "cannot write '%s': %s", path, strerror(err));
    }
    return CNV_OK;
}

void cnv_tmpfile_abort(cnv_tmpfile *t)
{
    if (!t)
        return;
    if (t->f) {
        fclose(t->f);
        unlink(t->tmp_path);
    }
    cnv_free(t->tmp_path);
    cnv_free(t->path);
    memset(t, 0, sizeof *t);
}

cnv_status cnv_tmpfile_commit(cnv_tmpfile *t, cnv_err *e)
{
    int err = 0;
    if (fflush(t->f) != 0 || ferror(t->f))
        err = errno ? errno : EIO;
    /* fsync so that the rename never exposes an empty file after a crash. */
    if (!err && fsync(fileno(t->f)) != 0 && errno != EINVAL && errno != EROFS)
        err = errno;
    if (fclose(t->f) != 0 && !err)
        err = errno ? errno : EIO;
    t->f = NULL;
    if (!err && rename(t->tmp_path, t->path) != 0)
        err = errno;
    cnv_status st = CNV_OK;
    if (err) {
        unlink(t->tmp_path);
        st = cnv_fail(e, CNV_ERR_IO, "cannot write '%s': %s", t->path, strerror(err));
    }
    cnv_free(t->tmp_path);
    cnv_free(t->path);
    memset(t, 0, sizeof *t);
    return st;
}
