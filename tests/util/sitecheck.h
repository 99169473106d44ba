/* Checks of a static web site (cnnviz atlas), with cmocka's asserts. */
#ifndef CNV_TEST_SITECHECK_H
#define CNV_TEST_SITECHECK_H

/* A file's whole text (fails the test if it cannot be read). */
char *tu_read_text(const char *path);
int tu_is_file(const char *path);
/* Checks every page of the site in dir: a doctype, elements that close in
 * order inside one <html>, quoted attributes, every href and src naming a
 * file of the site, no temporary file left. Returns the page count. */
int tu_check_site(const char *dir);
/* Whether two sites hold the same files with the same bytes (diff -r). */
void tu_assert_same_site(const char *a, const char *b);
/* Entries of dir, and those whose names start with prefix. */
int tu_count_files(const char *dir);
int tu_count_prefixed(const char *dir, const char *prefix);

#endif
