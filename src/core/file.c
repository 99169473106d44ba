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

/* ------------------------------------------------------ output targets */

cnv_status cnv_output_check(const char *path, cnv_err *e)
{
    if (!path || !*path)
        return cnv_fail(e, CNV_ERR_INVALID_ARG, "empty output path");
    struct stat sb;
    if (stat(path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode))
            return cnv_fail(e, CNV_ERR_IO, "cannot write '%s': it is %s, not a regular file", path,
                            S_ISDIR(sb.st_mode)    ? "a directory"
                            : S_ISFIFO(sb.st_mode) ? "a FIFO"
                            : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "a device"
                                                                          : "a special file");
        /* no write bit at all: read-only, even for root, whom access()
         * lets write anything */
        if ((sb.st_mode & 0222) == 0 || access(path, W_OK) != 0)
            return cnv_fail(e, CNV_ERR_IO, "cannot write '%s': %s", path,
                            (sb.st_mode & 0222) == 0 || errno == EACCES || errno == EROFS ? "it is read-only"
                                                                                          : strerror(errno));
    } else if (errno != ENOENT) {
        return cnv_fail(e, CNV_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    }
    /* the file is replaced by a rename in its directory */
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        snprintf(dir, sizeof dir, ".");
    } else if ((size_t)(slash - path) + 1 >= sizeof dir) {
        return cnv_fail(e, CNV_ERR_IO, "cannot write '%s': the path is too long", path);
    } else {
        memcpy(dir, path, (size_t)(slash - path) + (slash == path));
        dir[(slash - path) + (slash == path)] = '\0';
    }
    if (access(dir, W_OK | X_OK) != 0)
        return cnv_fail(e, CNV_ERR_IO, "cannot write '%s': %s", path,
                        errno == ENOENT ? "its directory does not exist" : strerror(errno));
    return CNV_OK;
}

cnv_status cnv_check_output(const char *path, char *errbuf, size_t errlen)
{
    cnv_err e;
    cnv_err_clear(&e);
    cnv_status st = cnv_output_check(path, &e);
    return st == CNV_OK ? st : cnv_errbuf_fail(errbuf, errlen, st, "%s", e.msg);
}

/* The temporary files of writes in progress, for cnv_remove_temp_files
 * to unlink from a signal handler: fixed slots, claimed and released
 * atomically, the name written before the slot is published. */
#define TMP_SLOTS 16
static char g_tmp_names[TMP_SLOTS][4096];
static atomic_int g_tmp_state[TMP_SLOTS]; /* 0 free, 1 being written, 2 published */

static int tmp_register(const char *name)
{
    if (strlen(name) >= sizeof g_tmp_names[0])
        return -1;
    for (int k = 0; k < TMP_SLOTS; k++) {
        int expect = 0;
        if (atomic_compare_exchange_strong(&g_tmp_state[k], &expect, 1)) {
            strcpy(g_tmp_names[k], name);
            atomic_store(&g_tmp_state[k], 2);
            return k;
        }
    }
    return -1; /* more writes at once than slots: not removed on a signal */
}

static void tmp_release(int k)
{
    if (k >= 0 && k < TMP_SLOTS)
        atomic_store(&g_tmp_state[k], 0);
}

void cnv_remove_temp_files(void)
{
    for (int k = 0; k < TMP_SLOTS; k++)
        if (atomic_load(&g_tmp_state[k]) == 2)
            unlink(g_tmp_names[k]);
}

cnv_status cnv_tmpfile_open(cnv_tmpfile *t, const char *path, cnv_err *e)
{
    memset(t, 0, sizeof *t);
    t->slot = -1;
    cnv_status st = cnv_output_check(path, e);
    if (st != CNV_OK)
        return st;
    size_t plen = strlen(path), cap;
    if (!cnv_add_size(plen, 64, &cap))
        return cnv_fail(e, CNV_ERR_NOMEM, "output path too long");
    t->path = cnv_strdup(path);
    t->tmp_path = cnv_malloc(cap);
    if (!t->path || !t->tmp_path) {
        cnv_tmpfile_abort(t);
        return cnv_fail(e, CNV_ERR_NOMEM, "out of memory");
    }
    /* A short name in the target's directory, so that a target name of
     * the system's full length still has room ("<dir>/.cnv<pid>-<n>.tmp").
     * open(O_EXCL) rather than mkstemp: the file gets the usual 0666 &
     * ~umask permissions, and a name taken by another writer is retried. */
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path + 1) : 0;
    int fd = -1;
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        unsigned n = atomic_fetch_add(&g_tmp_counter, 1u);
        snprintf(t->tmp_path, cap, "%.*s.cnv%ld-%u.tmp", dir_len, path, (long)getpid(), n);
        fd = open(t->tmp_path, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        int err = errno;
        cnv_tmpfile_abort(t);
        return cnv_fail(e, CNV_ERR_IO, "cannot write '%s': %s", path, strerror(err));
    }
    t->slot = tmp_register(t->tmp_path);
    /* An existing file keeps its permissions. */
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
        fchmod(fd, sb.st_mode & 07777);
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
    if (t->path || t->tmp_path)
        tmp_release(t->slot);
    cnv_free(t->tmp_path);
    cnv_free(t->path);
    memset(t, 0, sizeof *t);
    t->slot = -1;
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
    tmp_release(t->slot);
    cnv_free(t->tmp_path);
    cnv_free(t->path);
    memset(t, 0, sizeof *t);
    return st;
}
