/* Output files (issue "Untrusted input, round 2"): the writers replace
 * their target by a rename, so a FIFO, a device or a directory named as
 * an output must be refused (before, `-o` on a FIFO turned it into a
 * regular file, and as root `-o /dev/null` would have replaced the
 * system's node); a read-only file is refused (before: silently replaced);
 * an existing file keeps its permissions; a name of the system's full
 * length works (before: the temporary's suffix pushed it past 255 bytes);
 * and SIGINT during a long write leaves no temporary file behind (before:
 * OUT.gif.PID.N.tmp). The CLI checks its outputs before computing. */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static int setup(void **state)
{
    (void)state;
    return tu_scratch_make("cnv_outputs");
}

static int teardown(void **state)
{
    (void)state;
    return tu_scratch_remove();
}

/* Files in tu_scratch_dir() whose names contain text. */
static int count_files(const char *text)
{
    DIR *d = opendir(tu_scratch_dir());
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, text) != NULL;
    closedir(d);
    return n;
}

static cnv_image tiny(void)
{
    cnv_image img;
    char err[256];
    assert_int_equal(cnv_image_create(4, 3, 3, &img, err, sizeof err), CNV_OK);
    memset(img.data, 200, 36);
    return img;
}

static void special_targets(void **state)
{
    (void)state;
    char err[512];
    cnv_image img = tiny();
    const char *fifo = tu_scratch("fifo.png");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    assert_int_equal(cnv_image_write_png(&img, fifo, err, sizeof err), CNV_ERR_IO);
    printf("PNG onto a FIFO: %s\n", err);
    assert_non_null(strstr(err, "a FIFO"));
    struct stat sb;
    assert_int_equal(stat(fifo, &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode)); /* still a FIFO */
    assert_int_equal(cnv_check_output("/dev/null", err, sizeof err), CNV_ERR_IO);
    printf("/dev/null: %s\n", err);
    assert_non_null(strstr(err, "a device"));
    assert_int_equal(cnv_check_output(tu_scratch_dir(), err, sizeof err), CNV_ERR_IO);
    assert_non_null(strstr(err, "a directory"));
    assert_int_equal(cnv_check_output(tu_scratch("no/such/dir/x.png"), err, sizeof err), CNV_ERR_IO);
    assert_non_null(strstr(err, "does not exist"));
    assert_int_equal(cnv_check_output(tu_scratch("new.png"), err, sizeof err), CNV_OK);
    /* the CLI refuses before it computes anything */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "bin/cnnviz classmodel --class 1 --iters 100000 -o %s > %s 2>&1", fifo,
             tu_scratch("log"));
    int st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    assert_int_equal(stat(fifo, &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode));
    cnv_image_free(&img);
}

static void permissions(void **state)
{
    (void)state;
    char err[512];
    cnv_image img = tiny();
    const char *ro = tu_scratch("readonly.png"), *priv = tu_scratch("private.png");
    assert_int_equal(cnv_image_write_png(&img, ro, err, sizeof err), CNV_OK);
    assert_int_equal(chmod(ro, 0444), 0);
    struct stat before, after;
    assert_int_equal(stat(ro, &before), 0);
    /* refused also for root, whom the system lets write anything */
    assert_int_equal(cnv_image_write_png(&img, ro, err, sizeof err), CNV_ERR_IO);
    printf("PNG over a read-only file: %s\n", err);
    assert_non_null(strstr(err, "read-only"));
    assert_int_equal(stat(ro, &after), 0);
    assert_true(after.st_ino == before.st_ino);
    assert_int_equal(cnv_image_write_png(&img, priv, err, sizeof err), CNV_OK);
    assert_int_equal(chmod(priv, 0600), 0);
    assert_int_equal(cnv_image_write_png(&img, priv, err, sizeof err), CNV_OK);
    assert_int_equal(stat(priv, &after), 0);
    printf("a 0600 file written over: mode %o\n", (unsigned)(after.st_mode & 0777));
    assert_int_equal(after.st_mode & 0777, 0600);
    cnv_image_free(&img);
}

static void long_name(void **state)
{
    (void)state;
    char name[256], err[512];
    memset(name, 'a', 251);
    memcpy(name + 251, ".png", 5); /* 255 bytes: the longest a name may be */
    cnv_image img = tiny();
    assert_int_equal(cnv_image_write_png(&img, tu_scratch(name), err, sizeof err), CNV_OK);
    assert_int_equal(access(tu_scratch(name), R_OK), 0);
    assert_int_equal(count_files(".tmp"), 0);
    cnv_image_free(&img);
}

static void interrupted_gif(void **state)
{
    (void)state;
    tu_skip_under_valgrind("a CLI run interrupted by a signal");
    char log[512];
    snprintf(log, sizeof log, "%s", tu_scratch("gif.log"));
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl("bin/cnnviz", "cnnviz", "classmodel", "--class", "3", "--iters", "1000000", "--gif-every", "1",
              "--gif", tu_scratch("movie.gif"), "-o", tu_scratch("cm.png"), (char *)NULL);
        _exit(127);
    }
    /* wait for the GIF's temporary to appear, then interrupt */
    int seen = 0;
    for (int i = 0; i < 600 && !seen; i++) {
        seen = count_files(".tmp") > 0;
        if (!seen) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    assert_true(seen);
    assert_int_equal(kill(pid, SIGINT), 0);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    printf("classmodel --gif interrupted: %s %d; temporaries left: %d\n",
           WIFSIGNALED(st) ? "signal" : "exit", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
           count_files(".tmp"));
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGINT);
    assert_int_equal(count_files(".tmp"), 0);
    assert_int_equal(access(tu_scratch("movie.gif"), F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(special_targets),
        cmocka_unit_test(permissions),
        cmocka_unit_test(long_name),
        cmocka_unit_test(interrupted_gif),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
