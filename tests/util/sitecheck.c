/* Checks of a static web site (cnnviz atlas): pages well formed, every
 * link and picture resolving to a file of the site; and small file
 * helpers for the tests that make one. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sitecheck.h"
#include "testutil.h"

char *tu_read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

int tu_is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_void(const char *tag)
{
    static const char *const v[] = {"meta", "link", "img", "br", "hr", "input", NULL};
    for (int i = 0; v[i]; i++)
        if (!strcmp(tag, v[i]))
            return 1;
    return 0;
}

/* Well formed for the elements the atlas writes: a doctype, then tags
 * whose non-void elements close in order, attribute values quoted, and
 * the whole inside one <html> element. Returns 0, or prints why and
 * returns 1. Every href and src must name a file in dir (no URL). */
static int check_page(const char *dir, const char *name, int *links)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *s = tu_read_text(path);
    int bad = 0, depth = 0, closed_html = 0;
    char stack[64][16];
    if (strncmp(s, "<!DOCTYPE html>\n", 16)) {
        printf("%s: no doctype\n", name);
        bad = 1;
    }
    const char *p = s + (strncmp(s, "<!DOCTYPE", 9) ? 0 : 9);
    for (; !bad && (p = strchr(p, '<')) != NULL;) {
        if (!strncmp(p, "<!DOCTYPE", 9)) {
            bad = p != s;
            p++;
            continue;
        }
        if (closed_html) {
            printf("%s: a tag after </html>\n", name);
            bad = 1;
            break;
        }
        int closing = p[1] == '/';
        const char *q = p + 1 + closing;
        char tag[16];
        size_t n = 0;
        while ((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9'))
            if (n + 1 < sizeof tag)
                tag[n++] = *q++;
            else
                q++;
        tag[n] = '\0';
        if (!n) {
            printf("%s: a '<' that starts no tag\n", name);
            bad = 1;
            break;
        }
        /* attributes: name="value" ... up to '>' */
        while (*q && *q != '>') {
            if (*q == '<') {
                printf("%s: '<' inside the tag <%s>\n", name, tag);
                bad = 1;
                break;
            }
            if (*q == '=') {
                if (q[1] != '"') {
                    printf("%s: an unquoted attribute in <%s>\n", name, tag);
                    bad = 1;
                    break;
                }
                const char *v = q + 2, *e = strchr(v, '"');
                if (!e) {
                    printf("%s: an unterminated attribute in <%s>\n", name, tag);
                    bad = 1;
                    break;
                }
                int is_link = (q - p > 5 && !strncmp(q - 4, "href", 4)) || (q - p > 4 && !strncmp(q - 3, "src", 3));
                if (is_link) {
                    char target[512], full[1100];
                    snprintf(target, sizeof target, "%.*s", (int)(e - v), v);
                    char *hash = strchr(target, '#');
                    if (hash)
                        *hash = '\0';
                    snprintf(full, sizeof full, "%s/%s", dir, target);
                    if (strchr(target, ':') || target[0] == '/' || !target[0] || !tu_is_file(full)) {
                        printf("%s: the link '%s' names no file of the site\n", name, target);
                        bad = 1;
                    }
                    (*links)++;
                }
                q = e + 1;
                continue;
            }
            q++;
        }
        if (bad)
            break;
        if (!*q) {
            printf("%s: an unterminated tag <%s\n", name, tag);
            bad = 1;
            break;
        }
        if (closing) {
            if (depth == 0 || strcmp(stack[depth - 1], tag)) {
                printf("%s: </%s> closes <%s>\n", name, tag, depth ? stack[depth - 1] : "nothing");
                bad = 1;
                break;
            }
            depth--;
            closed_html = depth == 0;
        } else if (!is_void(tag)) {
            if (depth == 0 && strcmp(tag, "html")) {
                printf("%s: <%s> outside <html>\n", name, tag);
                bad = 1;
                break;
            }
            if (depth == 64) {
                printf("%s: nested too deep\n", name);
                bad = 1;
                break;
            }
            snprintf(stack[depth++], sizeof stack[0], "%s", tag);
        }
        p = q + 1;
    }
    if (!bad && (depth || !closed_html)) {
        printf("%s: %d elements left open\n", name, depth);
        bad = 1;
    }
    free(s);
    return bad;
}

/* Checks every page of a site; returns how many there are. */
int tu_check_site(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int pages = 0, bad = 0, links = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        assert_null(strstr(e->d_name, ".tmp")); /* no temporary file left */
        if (n > 5 && !strcmp(e->d_name + n - 5, ".html")) {
            bad += check_page(dir, e->d_name, &links);
            pages++;
        }
    }
    closedir(d);
    printf("%s: %d pages, %d links and pictures checked\n", dir, pages, links);
    assert_int_equal(bad, 0);
    assert_true(links > pages);
    return pages;
}

/* Whether two sites hold the same files with the same bytes. */
void tu_assert_same_site(const char *a, const char *b)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "diff -r '%s' '%s'", a, b);
    assert_int_equal(tu_run(cmd, NULL), 0);
}

int tu_count_files(const char *dir)
{
    char cmd[1024], *out;
    snprintf(cmd, sizeof cmd, "ls '%s' | wc -l", dir);
    assert_int_equal(tu_run(cmd, &out), 0);
    int n = atoi(out);
    free(out);
    return n;
}

/* Files in dir whose names start with prefix. */
int tu_count_prefixed(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += !strncmp(e->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

