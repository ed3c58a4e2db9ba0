/*
 * test_notes.c — unit tests for the save_note tool: default names (known
 * SHA-256), the filename policy, atomic create / idempotent re-save /
 * never-overwrite, temp-file cleanup on every outcome, I/O error mapping,
 * the JSON tool glue, the quota (files, bytes, re-saves when full,
 * concurrent writers), the removal of stale temp files, and a withdrawn save
 * — down to the engine's job on the I/O pool — never publishing. Each test
 * works in a fresh mkdtemp directory under /tmp that the fixture removes
 * again.
 */
#include "agentd/notes.h"

#include <check.h>
#include <stdatomic.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "agentd/io_pool.h"
#include "agentd/tools_exec.h"
#include "agentd/worker.h"

/* 2024-01-02T00:00:00Z */
#define JAN_2_2024_S ((time_t)1704153600)

static char g_dir[64];

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) < 0 && errno == EISDIR) {
            char sub[512];
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
    }
    closedir(d);
    rmdir(path);
}

static void setup(void)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/agentd-test-notes-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    umask(022);
}

static void teardown(void)
{
    chmod(g_dir, 0700);
    remove_tree(g_dir);
}

/* Counts directory entries whose name starts with prefix ("" = all). */
static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    }
    closedir(d);
    return n;
}

static void assert_no_temp_files(void)
{
    ck_assert_int_eq(count_entries(g_dir, ".tmp-"), 0);
}

/* Reads g_dir/name fully; returns a NUL-terminated heap buffer. */
static char *read_note(const char *name, size_t *ret_len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    ck_assert_int_ge(size, 0);
    rewind(f);
    char *buf = malloc((size_t)size + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    buf[size] = '\0';
    fclose(f);
    *ret_len = (size_t)size;
    return buf;
}

static void write_file(const char *name, const char *content)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(content, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

/* --- default names --- */

START_TEST(test_notes_default_name_uses_utc_date_and_sha256_prefix)
{
    char buf[NOTES_DEFAULT_NAME_BYTES];
    notes_default_name("hello", 5, JAN_2_2024_S, buf, sizeof(buf));
    ck_assert_str_eq(buf, "note_20240102_2cf24dba5fb0.txt");

    /* One second earlier is still the previous UTC day. */
    notes_default_name("hello", 5, JAN_2_2024_S - 1, buf, sizeof(buf));
    ck_assert_str_eq(buf, "note_20240101_2cf24dba5fb0.txt");

    /* SHA-256 of the empty string starts e3b0c44298fc. */
    notes_default_name(NULL, 0, 0, buf, sizeof(buf));
    ck_assert_str_eq(buf, "note_19700101_e3b0c44298fc.txt");
}
END_TEST

START_TEST(test_notes_default_name_depends_on_all_content_bytes)
{
    char a[NOTES_DEFAULT_NAME_BYTES];
    char b[NOTES_DEFAULT_NAME_BYTES];
    notes_default_name("hello\0a", 7, JAN_2_2024_S, a, sizeof(a));
    notes_default_name("hello\0b", 7, JAN_2_2024_S, b, sizeof(b));
    ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(test_notes_default_name_is_a_valid_filename)
{
    char buf[NOTES_DEFAULT_NAME_BYTES];
    notes_default_name("x", 1, JAN_2_2024_S, buf, sizeof(buf));
    ck_assert_int_eq(notes_validate_filename(buf, NULL, 0), 0);
}
END_TEST

/* --- filename policy --- */

START_TEST(test_notes_validate_filename_accepts_safe_names)
{
    static const char *const ok[] = {"a", "0", "note.txt", "A-b_c.1", "report.2024-01-02.md", "x."};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        ck_assert_msg(notes_validate_filename(ok[i], NULL, 0) == 0, "rejected '%s'", ok[i]);

    char longest[NOTES_MAX_NAME_BYTES + 1];
    memset(longest, 'a', NOTES_MAX_NAME_BYTES);
    longest[NOTES_MAX_NAME_BYTES] = '\0';
    ck_assert_int_eq(notes_validate_filename(longest, NULL, 0), 0);
}
END_TEST

START_TEST(test_notes_validate_filename_rejects_unsafe_names)
{
    static const struct {
        const char *name;
        const char *message_part;
    } bad[] = {
        {"", "must not be empty"},
        {"../x", "must start with a letter or digit, not '.'"},
        {"a/b", "has '/' at position 2"},
        {".hidden", "must start with a letter or digit"},
        {"a..b", "must not contain \"..\""},
        {"x..", "must not contain \"..\""},
        {"-rf", "must start with a letter or digit, not '-'"},
        {"_x", "must start with a letter or digit"},
        {"a b", "has byte 0x20 at position 2"},
        {"a\\b", "has '\\' at position 2"},
        {"caf\xc3\xa9", "has byte 0xc3 at position 4"},
        {"a\nb", "has byte 0x0a at position 2"},
        {".tmp-1", "must start with a letter or digit"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        ck_assert_msg(notes_validate_filename(bad[i].name, err, sizeof(err)) == -EINVAL,
                      "accepted '%s'", bad[i].name);
        ck_assert_msg(strstr(err, bad[i].message_part) != NULL, "'%s': message '%s' lacks '%s'",
                      bad[i].name, err, bad[i].message_part);
    }
}
END_TEST

START_TEST(test_notes_validate_filename_rejects_129_characters_and_null)
{
    char name[NOTES_MAX_NAME_BYTES + 2];
    memset(name, 'a', NOTES_MAX_NAME_BYTES + 1);
    name[NOTES_MAX_NAME_BYTES + 1] = '\0';
    char err[256] = "";
    ck_assert_int_eq(notes_validate_filename(name, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "too long"));
    ck_assert_int_eq(notes_validate_filename(NULL, err, sizeof(err)), -EINVAL);
}
END_TEST

/* --- notes_save --- */

START_TEST(test_notes_save_creates_note_with_exact_bytes)
{
    enum notes_outcome outcome = NOTES_ALREADY_SAVED;
    char err[256] = "";
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "hello\0world", 11, &outcome, err, sizeof(err)), 0);
    ck_assert_int_eq(outcome, NOTES_CREATED);

    size_t len;
    char *got = read_note("a.txt", &len);
    ck_assert_uint_eq(len, 11);
    ck_assert_mem_eq(got, "hello\0world", 11);
    free(got);

    char path[256];
    struct stat st;
    snprintf(path, sizeof(path), "%s/a.txt", g_dir);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0640);
    ck_assert_int_eq(count_entries(g_dir, ""), 1);
}
END_TEST

START_TEST(test_notes_save_same_content_again_is_already_saved)
{
    enum notes_outcome outcome;
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "hello", 5, &outcome, NULL, 0), 0);
    ck_assert_int_eq(outcome, NOTES_CREATED);
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "hello", 5, &outcome, NULL, 0), 0);
    ck_assert_int_eq(outcome, NOTES_ALREADY_SAVED);
    ck_assert_int_eq(count_entries(g_dir, ""), 1);
}
END_TEST

START_TEST(test_notes_save_never_overwrites_different_content)
{
    enum notes_outcome outcome = NOTES_CREATED;
    char err[256] = "";
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "original", 8, &outcome, NULL, 0), 0);

    outcome = NOTES_CREATED;
    /* Same length, a prefix, and a longer extension all differ. */
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "replaced", 8, &outcome, err, sizeof(err)),
                     -EEXIST);
    ck_assert_ptr_nonnull(strstr(err, "a different note named 'a.txt' already exists"));
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "orig", 4, &outcome, NULL, 0), -EEXIST);
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "original+", 9, &outcome, NULL, 0), -EEXIST);
    ck_assert_int_eq(outcome, NOTES_CREATED); /* untouched on failure */

    size_t len;
    char *got = read_note("a.txt", &len);
    ck_assert_uint_eq(len, 8);
    ck_assert_mem_eq(got, "original", 8);
    free(got);
    ck_assert_int_eq(count_entries(g_dir, ""), 1);
    assert_no_temp_files();
}
END_TEST

START_TEST(test_notes_save_leaves_no_temp_file_after_any_outcome)
{
    enum notes_outcome outcome;
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "one", 3, &outcome, NULL, 0), 0);
    assert_no_temp_files();
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "one", 3, &outcome, NULL, 0), 0);
    assert_no_temp_files();
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "two", 3, &outcome, NULL, 0), -EEXIST);
    assert_no_temp_files();
    ck_assert_int_eq(notes_save(g_dir, "../a.txt", "one", 3, &outcome, NULL, 0), -EINVAL);
    assert_no_temp_files();
    ck_assert_int_eq(count_entries(g_dir, ""), 1);
}
END_TEST

START_TEST(test_notes_save_removes_temp_file_when_write_fails)
{
    /* A file size limit makes write() fail with EFBIG after the temp file
     * exists, the one failure that needs cleanup of a half-written file. */
    struct rlimit old_limit;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
    struct rlimit small = old_limit;
    small.rlim_cur = 4;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);

    enum notes_outcome outcome = NOTES_ALREADY_SAVED;
    char err[256] = "";
    int r = notes_save(g_dir, "big.txt", "more than four bytes", 20, &outcome, err, sizeof(err));

    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
    signal(SIGXFSZ, old_handler);

    ck_assert_int_eq(r, -EFBIG);
    ck_assert_ptr_nonnull(strstr(err, "write temporary file: "));
    ck_assert_int_eq(outcome, NOTES_ALREADY_SAVED);
    ck_assert_int_eq(count_entries(g_dir, ""), 0);
}
END_TEST

START_TEST(test_notes_save_reports_missing_directory)
{
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/does-not-exist", g_dir);
    enum notes_outcome outcome;
    char err[256] = "";
    ck_assert_int_eq(notes_save(missing, "a.txt", "hello", 5, &outcome, err, sizeof(err)), -ENOENT);
    ck_assert_str_eq(err, "open notes directory: No such file or directory");
}
END_TEST

START_TEST(test_notes_save_rejects_directory_that_is_a_file_or_symlink)
{
    enum notes_outcome outcome;
    char path[128];
    write_file("plain", "x");
    snprintf(path, sizeof(path), "%s/plain", g_dir);
    ck_assert_int_eq(notes_save(path, "a.txt", "hello", 5, &outcome, NULL, 0), -ENOTDIR);

    char sub[128];
    snprintf(sub, sizeof(sub), "%s/real", g_dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    snprintf(path, sizeof(path), "%s/link", g_dir);
    ck_assert_int_eq(symlink(sub, path), 0);
    /* O_NOFOLLOW|O_DIRECTORY: the link itself is not a directory. */
    ck_assert_int_eq(notes_save(path, "a.txt", "hello", 5, &outcome, NULL, 0), -ENOTDIR);
    ck_assert_int_eq(count_entries(sub, ""), 0);
}
END_TEST

START_TEST(test_notes_save_does_not_follow_symlink_at_target_name)
{
    write_file("victim", "hello");
    char target[128];
    snprintf(target, sizeof(target), "%s/victim", g_dir);
    char link[128];
    snprintf(link, sizeof(link), "%s/a.txt", g_dir);
    ck_assert_int_eq(symlink(target, link), 0);

    /* Even identical bytes behind the link do not count as "already saved". */
    enum notes_outcome outcome;
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "hello", 5, &outcome, NULL, 0), -EEXIST);
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "other", 5, &outcome, NULL, 0), -EEXIST);
    size_t len;
    char *got = read_note("victim", &len);
    ck_assert_str_eq(got, "hello");
    free(got);
    assert_no_temp_files();
}
END_TEST

START_TEST(test_notes_save_treats_directory_at_target_name_as_taken)
{
    char sub[128];
    snprintf(sub, sizeof(sub), "%s/a.txt", g_dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    enum notes_outcome outcome;
    ck_assert_int_eq(notes_save(g_dir, "a.txt", "hello", 5, &outcome, NULL, 0), -EEXIST);
    assert_no_temp_files();
}
END_TEST

START_TEST(test_notes_save_reports_read_only_directory)
{
    ck_assert_int_eq(chmod(g_dir, 0500), 0);
    enum notes_outcome outcome;
    char err[256] = "";
    int r = notes_save(g_dir, "a.txt", "hello", 5, &outcome, err, sizeof(err));
    ck_assert_int_eq(chmod(g_dir, 0700), 0);

    if (geteuid() == 0)
        return; /* root bypasses directory permissions; nothing to observe */
    ck_assert_int_eq(r, -EACCES);
    ck_assert_str_eq(err, "create temporary file: Permission denied");
    ck_assert_int_eq(count_entries(g_dir, ""), 0);
}
END_TEST

START_TEST(test_notes_save_rejects_bad_arguments)
{
    enum notes_outcome outcome;
    char err[256] = "";
    ck_assert_int_eq(notes_save(g_dir, "a/b", "x", 1, &outcome, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "'/'"));
    ck_assert_int_eq(notes_save(NULL, "a", "x", 1, &outcome, NULL, 0), -EINVAL);
    ck_assert_int_eq(notes_save("", "a", "x", 1, &outcome, NULL, 0), -EINVAL);
    ck_assert_int_eq(notes_save(g_dir, "a", NULL, 1, &outcome, NULL, 0), -EINVAL);
    ck_assert_int_eq(count_entries(g_dir, ""), 0);
}
END_TEST

START_TEST(test_notes_save_enforces_content_size_limit)
{
    char *big = malloc(NOTES_MAX_CONTENT_BYTES + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, 'n', NOTES_MAX_CONTENT_BYTES + 1);

    enum notes_outcome outcome;
    char err[256] = "";
    ck_assert_int_eq(
        notes_save(g_dir, "big", big, NOTES_MAX_CONTENT_BYTES + 1, &outcome, err, sizeof(err)),
        -E2BIG);
    ck_assert_ptr_nonnull(strstr(err, "too large"));
    ck_assert_int_eq(count_entries(g_dir, ""), 0);

    ck_assert_int_eq(notes_save(g_dir, "big", big, NOTES_MAX_CONTENT_BYTES, &outcome, NULL, 0), 0);
    ck_assert_int_eq(outcome, NOTES_CREATED);
    /* The comparison path reads the whole megabyte in chunks. */
    ck_assert_int_eq(notes_save(g_dir, "big", big, NOTES_MAX_CONTENT_BYTES, &outcome, NULL, 0), 0);
    ck_assert_int_eq(outcome, NOTES_ALREADY_SAVED);
    big[NOTES_MAX_CONTENT_BYTES - 1] = 'x';
    ck_assert_int_eq(notes_save(g_dir, "big", big, NOTES_MAX_CONTENT_BYTES, &outcome, NULL, 0),
                     -EEXIST);
    free(big);
}
END_TEST

struct race_arg {
    int result;
    enum notes_outcome outcome;
};

static void *race_save(void *p)
{
    struct race_arg *arg = p;
    arg->result = notes_save(g_dir, "race.txt", "same bytes", 10, &arg->outcome, NULL, 0);
    return NULL;
}

START_TEST(test_notes_save_concurrent_same_note_creates_exactly_once)
{
    enum { THREADS = 8 };
    pthread_t threads[THREADS];
    struct race_arg args[THREADS];
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, race_save, &args[i]), 0);
    int created = 0;
    for (int i = 0; i < THREADS; i++) {
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
        ck_assert_int_eq(args[i].result, 0);
        created += args[i].outcome == NOTES_CREATED;
    }
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(count_entries(g_dir, ""), 1);
}
END_TEST

/* --- tool glue --- */

static struct tool_result run_tool_ctl(const char *json_text, const char *dir,
                                       const struct notes_save_ctl *ctl)
{
    json_error_t jerr;
    json_t *input = json_loads(json_text, JSON_ALLOW_NUL, &jerr);
    ck_assert_msg(input != NULL, "bad test JSON: %s", jerr.text);
    struct tool_result res = {0};
    ck_assert_int_eq(notes_tool_run(input, dir, JAN_2_2024_S, ctl, &res), 0);
    ck_assert_ptr_nonnull(res.text);
    json_decref(input);
    return res;
}

static struct tool_result run_tool(const char *json_text, const char *dir)
{
    return run_tool_ctl(json_text, dir, NULL);
}

START_TEST(test_notes_tool_saves_then_reports_already_saved)
{
    struct tool_result res = run_tool("{\"content\":\"hello\",\"filename\":\"a.txt\"}", g_dir);
    ck_assert_int_eq(res.kind, TOOL_OK);
    ck_assert_str_eq(res.text, "saved note a.txt (5 bytes)");
    tool_result_clear(&res);

    res = run_tool("{\"content\":\"hello\",\"filename\":\"a.txt\"}", g_dir);
    ck_assert_int_eq(res.kind, TOOL_OK);
    ck_assert_str_eq(res.text, "note a.txt already saved (5 bytes, same content)");
    tool_result_clear(&res);

    res = run_tool("{\"content\":\"other\",\"filename\":\"a.txt\"}", g_dir);
    ck_assert_int_eq(res.kind, TOOL_INPUT_ERROR);
    ck_assert_ptr_nonnull(strstr(res.text, "choose another filename"));
    tool_result_clear(&res);
    ck_assert_int_eq(count_entries(g_dir, ""), 1);
}
END_TEST

START_TEST(test_notes_tool_uses_default_name_without_filename)
{
    struct tool_result res = run_tool("{\"content\":\"hello\"}", g_dir);
    ck_assert_int_eq(res.kind, TOOL_OK);
    ck_assert_str_eq(res.text, "saved note note_20240102_2cf24dba5fb0.txt (5 bytes)");
    tool_result_clear(&res);

    res = run_tool("{\"content\":\"hello\",\"filename\":null}", g_dir);
    ck_assert_int_eq(res.kind, TOOL_OK);
    ck_assert_str_eq(res.text,
                     "note note_20240102_2cf24dba5fb0.txt already saved (5 bytes, same content)");
    tool_result_clear(&res);

    size_t len;
    char *got = read_note("note_20240102_2cf24dba5fb0.txt", &len);
    ck_assert_str_eq(got, "hello");
    free(got);
}
END_TEST

START_TEST(test_notes_tool_rejects_bad_fields_as_input_errors)
{
    static const struct {
        const char *json;
        const char *message_part;
    } bad[] = {
        {"{}", "missing required field \"content\""},
        {"{\"content\":42}", "\"content\" must be a string"},
        {"{\"content\":\"\"}", "\"content\" must not be empty"},
        {"{\"content\":\"x\",\"filename\":7}", "\"filename\" must be a string"},
        {"{\"content\":\"x\",\"filename\":\"../x\"}", "invalid \"filename\": filename must start"},
        {"{\"content\":\"x\",\"filename\":\"a/b\"}", "invalid \"filename\""},
        {"{\"content\":\"x\",\"filename\":\"a\\u0000b\"}", "must not contain NUL"},
        {"[\"x\"]", "must be an object"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tool_result res = run_tool(bad[i].json, g_dir);
        ck_assert_msg(res.kind == TOOL_INPUT_ERROR, "%s: kind %d", bad[i].json, res.kind);
        ck_assert_msg(strstr(res.text, bad[i].message_part) != NULL, "%s: '%s' lacks '%s'",
                      bad[i].json, res.text, bad[i].message_part);
        tool_result_clear(&res);
    }
    ck_assert_int_eq(count_entries(g_dir, ""), 0);
}
END_TEST

START_TEST(test_notes_tool_rejects_oversized_content_as_input_error)
{
    char *big = malloc(NOTES_MAX_CONTENT_BYTES + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, 'n', NOTES_MAX_CONTENT_BYTES + 1);
    json_t *input = json_pack("{s:s%}", "content", big, (size_t)NOTES_MAX_CONTENT_BYTES + 1);
    ck_assert_ptr_nonnull(input);
    struct tool_result res = {0};
    ck_assert_int_eq(notes_tool_run(input, g_dir, JAN_2_2024_S, NULL, &res), 0);
    ck_assert_int_eq(res.kind, TOOL_INPUT_ERROR);
    ck_assert_ptr_nonnull(strstr(res.text, "too large"));
    tool_result_clear(&res);
    json_decref(input);
    free(big);
    ck_assert_int_eq(count_entries(g_dir, ""), 0);
}
END_TEST

START_TEST(test_notes_tool_reports_io_failure_as_system_error_without_content)
{
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/does-not-exist", g_dir);
    struct tool_result res = run_tool("{\"content\":\"SECRET-CONTENT\"}", missing);
    ck_assert_int_eq(res.kind, TOOL_SYSTEM_ERROR);
    ck_assert_str_eq(res.text, "cannot save note: open notes directory: No such file or directory");
    tool_result_clear(&res);

    res = run_tool("{\"content\":\"x\"}", NULL);
    ck_assert_int_eq(res.kind, TOOL_SYSTEM_ERROR);
    ck_assert_ptr_nonnull(strstr(res.text, "not configured"));
    tool_result_clear(&res);
}
END_TEST

START_TEST(test_notes_tool_reports_read_only_directory_as_system_error)
{
    ck_assert_int_eq(chmod(g_dir, 0500), 0);
    struct tool_result res = run_tool("{\"content\":\"hello\"}", g_dir);
    ck_assert_int_eq(chmod(g_dir, 0700), 0);

    if (geteuid() != 0) { /* root bypasses directory permissions */
        ck_assert_int_eq(res.kind, TOOL_SYSTEM_ERROR);
        ck_assert_ptr_nonnull(strstr(res.text, "Permission denied"));
    }
    tool_result_clear(&res);
}
END_TEST

/* --- quota --- */

static struct notes_usage *new_usage(uint64_t max_files, uint64_t max_bytes)
{
    struct notes_usage *u = notes_usage_new(g_dir, max_files, max_bytes);
    ck_assert_ptr_nonnull(u);
    return u;
}

static int save_with(struct notes_usage *u, const char *name, const char *content,
                     enum notes_outcome *outcome, char *err, size_t errlen)
{
    struct notes_save_ctl ctl = {.usage = u};
    return notes_save_ctl(g_dir, name, content, strlen(content), &ctl, outcome, err, errlen);
}

static struct notes_usage_snapshot usage_of(struct notes_usage *u)
{
    struct notes_usage_snapshot s;
    notes_usage_get(u, &s);
    return s;
}

START_TEST(test_notes_quota_refuses_a_new_file_past_max_files)
{
    struct notes_usage *u = new_usage(2, 0);
    enum notes_outcome outcome;
    char err[256] = "";
    ck_assert_int_eq(save_with(u, "a.txt", "one", &outcome, NULL, 0), 0);
    ck_assert_int_eq(save_with(u, "b.txt", "two", &outcome, NULL, 0), 0);
    ck_assert_int_eq(save_with(u, "c.txt", "three", &outcome, err, sizeof(err)), -EDQUOT);
    ck_assert_str_eq(err, "the notes quota is full: 2 files / 6 bytes (AGENTD_NOTES_MAX_FILES is "
                          "2); this note was not saved");
    ck_assert_int_eq(count_entries(g_dir, ""), 2);
    assert_no_temp_files();

    struct notes_usage_snapshot s = usage_of(u);
    ck_assert(s.counted);
    ck_assert_uint_eq(s.files, 2);
    ck_assert_uint_eq(s.bytes, 6);
    ck_assert_uint_eq(s.max_files, 2);
    ck_assert(notes_usage_full(&s));
    notes_usage_free(u);
}
END_TEST

START_TEST(test_notes_quota_refuses_a_note_past_max_bytes)
{
    struct notes_usage *u = new_usage(0, 10);
    enum notes_outcome outcome;
    char err[256] = "";
    ck_assert_int_eq(save_with(u, "a.txt", "12345", &outcome, NULL, 0), 0);
    ck_assert_int_eq(save_with(u, "b.txt", "123456", &outcome, err, sizeof(err)), -EDQUOT);
    ck_assert_str_eq(err, "the notes quota is full: 1 files / 5 bytes (AGENTD_NOTES_MAX_BYTES is "
                          "10, this note needs 6 more); this note was not saved");
    struct notes_usage_snapshot s = usage_of(u);
    ck_assert(!notes_usage_full(&s));

    /* A note that fits exactly is taken, and then nothing more fits. */
    ck_assert_int_eq(save_with(u, "c.txt", "abcde", &outcome, NULL, 0), 0);
    s = usage_of(u);
    ck_assert_uint_eq(s.bytes, 10);
    ck_assert(notes_usage_full(&s));
    ck_assert_int_eq(save_with(u, "d.txt", "x", &outcome, NULL, 0), -EDQUOT);
    ck_assert_int_eq(count_entries(g_dir, ""), 2);
    assert_no_temp_files();
    notes_usage_free(u);
}
END_TEST

START_TEST(test_notes_quota_full_still_allows_resaving_the_same_note)
{
    struct notes_usage *u = new_usage(1, 0);
    enum notes_outcome outcome = NOTES_CREATED;
    ck_assert_int_eq(save_with(u, "a.txt", "kept", &outcome, NULL, 0), 0);
    ck_assert_int_eq(outcome, NOTES_CREATED);
    ck_assert_int_eq(save_with(u, "a.txt", "kept", &outcome, NULL, 0), 0);
    ck_assert_int_eq(outcome, NOTES_ALREADY_SAVED);
    /* A taken name is still the model's to fix, full or not. */
    ck_assert_int_eq(save_with(u, "a.txt", "other", &outcome, NULL, 0), -EEXIST);
    ck_assert_uint_eq(usage_of(u).files, 1);
    notes_usage_free(u);
}
END_TEST

START_TEST(test_notes_quota_counts_what_the_directory_holds_at_first_use)
{
    write_file("old-1.txt", "abc");
    write_file("old-2.txt", "defgh");
    write_file(".tmp-leftover", "not a note");
    write_file(".ready-probe-host-1", "r");
    char sub[128];
    snprintf(sub, sizeof(sub), "%s/subdir", g_dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);

    struct notes_usage *u = new_usage(3, 0);
    ck_assert(!usage_of(u).counted);
    enum notes_outcome outcome;
    ck_assert_int_eq(save_with(u, "new.txt", "ij", &outcome, NULL, 0), 0);
    struct notes_usage_snapshot s = usage_of(u);
    ck_assert(s.counted);
    ck_assert_uint_eq(s.files, 3);
    ck_assert_uint_eq(s.bytes, 10);
    ck_assert_int_eq(save_with(u, "more.txt", "k", &outcome, NULL, 0), -EDQUOT);
    rmdir(sub);
    notes_usage_free(u);
}
END_TEST

START_TEST(test_notes_usage_scan_sees_notes_removed_by_an_operator)
{
    struct notes_usage *u = new_usage(1, 0);
    ck_assert_int_eq(notes_usage_scan(u), 0);
    ck_assert_uint_eq(usage_of(u).files, 0);
    enum notes_outcome outcome;
    ck_assert_int_eq(save_with(u, "a.txt", "one", &outcome, NULL, 0), 0);
    ck_assert_int_eq(save_with(u, "b.txt", "two", &outcome, NULL, 0), -EDQUOT);

    char path[256];
    snprintf(path, sizeof(path), "%s/a.txt", g_dir);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(save_with(u, "b.txt", "two", &outcome, NULL, 0), -EDQUOT); /* not yet seen */
    ck_assert_int_eq(notes_usage_scan(u), 0);
    ck_assert_uint_eq(usage_of(u).files, 0);
    ck_assert_int_eq(save_with(u, "b.txt", "two", &outcome, NULL, 0), 0);
    notes_usage_free(u);
}
END_TEST

START_TEST(test_notes_usage_without_limits_counts_nothing)
{
    write_file("old.txt", "abc");
    struct notes_usage *u = new_usage(0, 0);
    ck_assert_int_eq(notes_usage_scan(u), 0);
    enum notes_outcome outcome;
    ck_assert_int_eq(save_with(u, "a.txt", "one", &outcome, NULL, 0), 0);
    struct notes_usage_snapshot s = usage_of(u);
    ck_assert(!s.counted);
    ck_assert(!notes_usage_full(&s));
    notes_usage_free(u);
}
END_TEST

START_TEST(test_notes_usage_scan_error_is_kept_and_fails_the_save)
{
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/missing", g_dir);
    struct notes_usage *u = notes_usage_new(missing, 5, 0);
    ck_assert_ptr_nonnull(u);
    ck_assert_int_eq(notes_usage_scan(u), -ENOENT);
    struct notes_usage_snapshot s = usage_of(u);
    ck_assert(!s.counted);
    ck_assert_int_eq(s.scan_error, -ENOENT);
    ck_assert(!notes_usage_full(&s));
    ck_assert_ptr_null(notes_usage_free(u));
    ck_assert_ptr_null(notes_usage_free(NULL));
    ck_assert_ptr_null(notes_usage_new("", 1, 1));
    ck_assert_ptr_null(notes_usage_new(NULL, 1, 1));
}
END_TEST

struct quota_race {
    struct notes_usage *usage;
    int index;
    int result;
};

static void *quota_race_save(void *p)
{
    struct quota_race *arg = p;
    char name[32], content[16];
    snprintf(name, sizeof(name), "n%02d.txt", arg->index);
    snprintf(content, sizeof(content), "note %05d", arg->index); /* 10 bytes each */
    struct notes_save_ctl ctl = {.usage = arg->usage};
    enum notes_outcome outcome;
    arg->result = notes_save_ctl(g_dir, name, content, strlen(content), &ctl, &outcome, NULL, 0);
    return NULL;
}

/* THREADS writers race for 5 slots, counted in files or in bytes: exactly 5 win. */
static void assert_quota_race(uint64_t max_files, uint64_t max_bytes)
{
    enum { THREADS = 16, SLOTS = 5 };
    struct notes_usage *u = new_usage(max_files, max_bytes);
    pthread_t threads[THREADS];
    struct quota_race args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct quota_race){.usage = u, .index = i};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, quota_race_save, &args[i]), 0);
    }
    int saved = 0, refused = 0;
    for (int i = 0; i < THREADS; i++) {
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
        ck_assert_msg(args[i].result == 0 || args[i].result == -EDQUOT, "writer %d: %d", i,
                      args[i].result);
        saved += args[i].result == 0;
        refused += args[i].result == -EDQUOT;
    }
    ck_assert_int_eq(saved, SLOTS);
    ck_assert_int_eq(refused, THREADS - SLOTS);
    ck_assert_int_eq(count_entries(g_dir, ""), SLOTS);
    struct notes_usage_snapshot s = usage_of(u);
    ck_assert_uint_eq(s.files, SLOTS);
    ck_assert_uint_eq(s.bytes, SLOTS * 10);
    /* The running totals agree with a fresh count. */
    ck_assert_int_eq(notes_usage_scan(u), 0);
    ck_assert_uint_eq(usage_of(u).files, SLOTS);
    ck_assert_uint_eq(usage_of(u).bytes, SLOTS * 10);
    notes_usage_free(u);
}

START_TEST(test_notes_quota_concurrent_writers_never_overshoot_max_files)
{
    assert_quota_race(5, 0);
}
END_TEST

START_TEST(test_notes_quota_concurrent_writers_never_overshoot_max_bytes)
{
    assert_quota_race(0, 50);
}
END_TEST

START_TEST(test_notes_tool_reports_a_full_quota_as_an_input_error)
{
    struct notes_usage *u = new_usage(1, 0);
    struct notes_save_ctl ctl = {.usage = u};
    struct tool_result res =
        run_tool_ctl("{\"content\":\"one\",\"filename\":\"a.txt\"}", g_dir, &ctl);
    ck_assert_int_eq(res.kind, TOOL_OK);
    tool_result_clear(&res);

    res = run_tool_ctl("{\"content\":\"two\",\"filename\":\"b.txt\"}", g_dir, &ctl);
    ck_assert_int_eq(res.kind, TOOL_INPUT_ERROR);
    ck_assert_str_eq(res.text, "cannot save note: the notes quota is full: 1 files / 3 bytes "
                               "(AGENTD_NOTES_MAX_FILES is 1); this note was not saved");
    tool_result_clear(&res);

    res = run_tool_ctl("{\"content\":\"one\",\"filename\":\"a.txt\"}", g_dir, &ctl);
    ck_assert_int_eq(res.kind, TOOL_OK);
    ck_assert_str_eq(res.text, "note a.txt already saved (3 bytes, same content)");
    tool_result_clear(&res);
    ck_assert_int_eq(count_entries(g_dir, ""), 1);
    notes_usage_free(u);
}
END_TEST

START_TEST(test_notes_quota_is_not_charged_when_the_write_fails)
{
    /* A file size limit makes the write of the temp file fail (EFBIG): a system error, and the
       quota stays as it was. */
    struct rlimit old_limit;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
    struct rlimit small = old_limit;
    small.rlim_cur = 2;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    struct notes_usage *u = new_usage(10, 0);
    struct notes_save_ctl ctl = {.usage = u};
    struct tool_result res = run_tool_ctl("{\"content\":\"too long\"}", g_dir, &ctl);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
    signal(SIGXFSZ, old_handler);
    ck_assert_int_eq(res.kind, TOOL_SYSTEM_ERROR);
    tool_result_clear(&res);
    ck_assert_uint_eq(usage_of(u).files, 0);
    notes_usage_free(u);
}
END_TEST

/* --- stale temp files --- */

static char g_host[NOTES_HOST_TAG_BYTES];

/* Creates g_dir/name with its modification time set to mtime_s. */
static void write_file_at(const char *name, time_t mtime_s)
{
    write_file(name, "partial");
    struct timespec times[2] = {{.tv_sec = mtime_s}, {.tv_sec = mtime_s}};
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    ck_assert_int_eq(utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW), 0);
}

static bool exists(const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_dir, name);
    return access(path, F_OK) == 0;
}

/* A pid no process has: a child that has exited and been reaped. */
static pid_t dead_pid(void)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    return pid;
}

START_TEST(test_notes_host_tag_is_the_sanitised_host_name)
{
    char host[NOTES_HOST_TAG_BYTES] = "";
    ck_assert_int_eq(gethostname(host, sizeof(host) - 1), 0);
    for (char *p = host; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '.'))
            *p = '_';
    char tag[NOTES_HOST_TAG_BYTES];
    notes_host_tag(tag, sizeof(tag));
    ck_assert_str_eq(tag, host[0] ? host : "unknown");
    char small[4];
    notes_host_tag(small, sizeof(small));
    ck_assert_uint_le(strlen(small), 3);
}
END_TEST

START_TEST(test_notes_remove_stale_temps_takes_leftovers_and_spares_live_saves)
{
    const time_t now = JAN_2_2024_S;
    const time_t fresh = now - 60, old = now - NOTES_STALE_TEMP_AGE_S;
    char own[256], dead[256], live[256], other_fresh[256], other_old[256];
    notes_host_tag(g_host, sizeof(g_host));
    ck_assert_str_ne(g_host, "other-replica-7");
    /* This process's own pid (a restarted container is pid 1 again) and a dead pid of this
       host: a crash's leftovers, removed however fresh. */
    snprintf(own, sizeof(own), ".tmp-%s-%ld-3-0123456789abcdef", g_host, (long)getpid());
    snprintf(dead, sizeof(dead), ".tmp-%s-%ld-0-fedcba9876543210", g_host, (long)dead_pid());
    /* A live process of this host (our parent) may be saving right now. */
    snprintf(live, sizeof(live), ".tmp-%s-%ld-0-0000000000000000", g_host, (long)getppid());
    /* Another replica's: only once old. */
    snprintf(other_fresh, sizeof(other_fresh), ".tmp-other-replica-7-%ld-1-0123456789abcdef",
             (long)getpid());
    snprintf(other_old, sizeof(other_old), ".tmp-other-replica-7-%ld-2-0123456789abcdef",
             (long)getpid());
    write_file_at(own, fresh);
    write_file_at(dead, fresh);
    write_file_at(live, fresh);
    write_file_at(other_fresh, now - NOTES_STALE_TEMP_AGE_S + 1);
    write_file_at(other_old, old);
    /* Temp names from before names carried a host: only once old. */
    write_file_at(".tmp-1-4-0123456789abcdef", fresh);
    write_file_at(".tmp-1-5-0123456789abcdef", old - 3600);
    /* Never temp files: notes, probe files, a directory named like a temp file. */
    write_file_at("note.txt", old);
    write_file_at(".ready-probe-x-1", old);
    char sub[256];
    snprintf(sub, sizeof(sub), "%s/.tmp-dir", g_dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);

    ck_assert_int_eq(notes_remove_stale_temps(g_dir, now), 4);
    ck_assert(!exists(own));
    ck_assert(!exists(dead));
    ck_assert(exists(live));
    ck_assert(exists(other_fresh));
    ck_assert(!exists(other_old));
    ck_assert(exists(".tmp-1-4-0123456789abcdef"));
    ck_assert(!exists(".tmp-1-5-0123456789abcdef"));
    ck_assert(exists("note.txt"));
    ck_assert(exists(".ready-probe-x-1"));
    ck_assert(exists(".tmp-dir"));
    ck_assert_int_eq(notes_remove_stale_temps(g_dir, now), 0);
}
END_TEST

START_TEST(test_notes_remove_stale_temps_reports_an_unreadable_directory)
{
    char missing[128];
    snprintf(missing, sizeof(missing), "%s/missing", g_dir);
    ck_assert_int_eq(notes_remove_stale_temps(missing, JAN_2_2024_S), -ENOENT);
    ck_assert_int_eq(notes_remove_stale_temps(NULL, JAN_2_2024_S), -EINVAL);
}
END_TEST

/* --- withdrawn saves --- */

struct withdraw {
    int calls;
    int withdraw_at;   /* the call that answers true (1 = the first) */
    int temps_seen;    /* temp files of this host and pid when that call came */
    bool note_visible; /* the note already existed then */
};

static bool withdraw_cb(void *arg)
{
    struct withdraw *w = arg;
    if (++w->calls != w->withdraw_at)
        return false;
    char prefix[128];
    notes_host_tag(g_host, sizeof(g_host));
    snprintf(prefix, sizeof(prefix), ".tmp-%s-%ld-", g_host, (long)getpid());
    w->temps_seen = count_entries(g_dir, prefix);
    w->note_visible = exists("late.txt");
    return true;
}

START_TEST(test_notes_save_withdrawn_before_it_starts_writes_nothing)
{
    struct withdraw w = {.withdraw_at = 1};
    struct notes_save_ctl ctl = {.cancelled = withdraw_cb, .cancelled_arg = &w};
    enum notes_outcome outcome;
    char err[256] = "";
    ck_assert_int_eq(notes_save_ctl(g_dir, "late.txt", "late", 4, &ctl, &outcome, err, sizeof(err)),
                     -ECANCELED);
    ck_assert_int_eq(w.calls, 1);
    ck_assert_int_eq(w.temps_seen, 0);
    ck_assert_int_eq(count_entries(g_dir, ""), 0);
}
END_TEST

START_TEST(test_notes_save_withdrawn_at_the_commit_point_removes_its_temp_file)
{
    struct notes_usage *u = new_usage(10, 0);
    struct withdraw w = {.withdraw_at = 2};
    struct notes_save_ctl ctl = {.usage = u, .cancelled = withdraw_cb, .cancelled_arg = &w};
    enum notes_outcome outcome;
    char err[256] = "";
    ck_assert_int_eq(notes_save_ctl(g_dir, "late.txt", "late", 4, &ctl, &outcome, err, sizeof(err)),
                     -ECANCELED);
    /* Asked once more with the note fully written to its temp file (named with this host and
       pid) and not yet published. */
    ck_assert_int_eq(w.calls, 2);
    ck_assert_int_eq(w.temps_seen, 1);
    ck_assert(!w.note_visible);
    ck_assert_int_eq(count_entries(g_dir, ""), 0);
    ck_assert_uint_eq(usage_of(u).files, 0);

    /* Not withdrawn: the same save publishes. */
    w = (struct withdraw){.withdraw_at = 0};
    ck_assert_int_eq(notes_save_ctl(g_dir, "late.txt", "late", 4, &ctl, &outcome, NULL, 0), 0);
    ck_assert_int_eq(w.calls, 2);
    ck_assert(exists("late.txt"));
    ck_assert_uint_eq(usage_of(u).files, 1);
    notes_usage_free(u);
}
END_TEST

START_TEST(test_notes_tool_reports_a_withdrawn_save_as_a_system_error)
{
    struct withdraw w = {.withdraw_at = 2};
    struct notes_save_ctl ctl = {.cancelled = withdraw_cb, .cancelled_arg = &w};
    struct tool_result res =
        run_tool_ctl("{\"content\":\"x\",\"filename\":\"late.txt\"}", g_dir, &ctl);
    ck_assert_int_eq(res.kind, TOOL_SYSTEM_ERROR);
    ck_assert_ptr_nonnull(strstr(res.text, "withdrawn"));
    tool_result_clear(&res);
    ck_assert_int_eq(count_entries(g_dir, ""), 0);
}
END_TEST

/* --- the engine's job on the I/O pool --- */

/* Holds the pool's only thread until the test writes to the pipe, so a job queues behind it. */
static void gate_job(void *arg)
{
    char c;
    ck_assert_int_eq(read(*(int *)arg, &c, 1), 1);
}

static void gate_done(struct worker *w, void *arg)
{
    (void)w;
    (void)arg;
}

static void tool_done(struct tool_exec *t, void *arg)
{
    (void)t;
    (*(int *)arg)++;
}

/* Starts save_note on a worker that is never started (its posted completions run when the test
   says), with its job queued behind a gate on a one-thread pool; cancel = cancel the tool while
   the job waits, as when the run ends. Returns how often done() was called. */
static int run_note_job(bool cancel, struct notes_usage *usage, struct tool_exec *t)
{
    struct worker *w = worker_new(0, 4);
    ck_assert_ptr_nonnull(w);
    struct io_pool *io = io_pool_new(1);
    ck_assert_ptr_nonnull(io);
    int gate[2];
    ck_assert_int_eq(pipe(gate), 0);
    ck_assert_int_eq(io_pool_submit(io, gate_job, w, gate_done, &gate[0]), 0);

    struct tool_exec_env env = {.io = io, .notes_dir = g_dir, .notes_usage = usage};
    atomic_init(&env.timeout_ms[TOOL_SAVE_NOTE], 60000);
    json_t *input = json_pack("{s:s, s:s}", "content", "late note", "filename", "late.txt");
    ck_assert_int_eq(tool_exec_init(t, "toolu_1", "save_note", input), 0);
    json_decref(input);
    int done = 0;
    tool_exec_start(t, w, &env, INT64_MAX, false, "req_test", tool_done, &done);
    ck_assert_int_eq(done, 0);
    if (cancel)
        tool_exec_cancel(t);

    ck_assert_int_eq(write(gate[1], "g", 1), 1);
    io = io_pool_free(io); /* runs the queued job and posts its completion */
    worker_run_pending(w); /* the completion, on "the worker" */
    close(gate[0]);
    close(gate[1]);
    worker_free(w);
    return done;
}

START_TEST(test_notes_job_of_a_finished_tool_call_publishes)
{
    struct notes_usage *u = new_usage(10, 0);
    struct tool_exec t;
    ck_assert_int_eq(run_note_job(false, u, &t), 1);
    ck_assert_int_eq(t.result.kind, TOOL_OK);
    ck_assert_str_eq(t.result.text, "saved note late.txt (9 bytes)");
    ck_assert(exists("late.txt"));
    ck_assert_uint_eq(usage_of(u).files, 1);
    tool_exec_clear(&t);
    notes_usage_free(u);
}
END_TEST

START_TEST(test_notes_job_of_a_cancelled_tool_call_does_not_commit)
{
    struct notes_usage *u = new_usage(10, 0);
    struct tool_exec t;
    ck_assert_int_eq(run_note_job(true, u, &t), 0);
    /* The run no longer waits for it: nothing published, nothing left behind, nothing charged. */
    ck_assert_int_eq(count_entries(g_dir, ""), 0);
    ck_assert_uint_eq(usage_of(u).files, 0);
    tool_exec_clear(&t);
    notes_usage_free(u);
}
END_TEST

static Suite *notes_suite(void)
{
    Suite *s = suite_create("notes");

    TCase *names = tcase_create("names");
    tcase_add_test(names, test_notes_default_name_uses_utc_date_and_sha256_prefix);
    tcase_add_test(names, test_notes_default_name_depends_on_all_content_bytes);
    tcase_add_test(names, test_notes_default_name_is_a_valid_filename);
    tcase_add_test(names, test_notes_validate_filename_accepts_safe_names);
    tcase_add_test(names, test_notes_validate_filename_rejects_unsafe_names);
    tcase_add_test(names, test_notes_validate_filename_rejects_129_characters_and_null);
    suite_add_tcase(s, names);

    TCase *save = tcase_create("save");
    tcase_add_checked_fixture(save, setup, teardown);
    tcase_add_test(save, test_notes_save_creates_note_with_exact_bytes);
    tcase_add_test(save, test_notes_save_same_content_again_is_already_saved);
    tcase_add_test(save, test_notes_save_never_overwrites_different_content);
    tcase_add_test(save, test_notes_save_leaves_no_temp_file_after_any_outcome);
    tcase_add_test(save, test_notes_save_removes_temp_file_when_write_fails);
    tcase_add_test(save, test_notes_save_reports_missing_directory);
    tcase_add_test(save, test_notes_save_rejects_directory_that_is_a_file_or_symlink);
    tcase_add_test(save, test_notes_save_does_not_follow_symlink_at_target_name);
    tcase_add_test(save, test_notes_save_treats_directory_at_target_name_as_taken);
    tcase_add_test(save, test_notes_save_reports_read_only_directory);
    tcase_add_test(save, test_notes_save_rejects_bad_arguments);
    tcase_add_test(save, test_notes_save_enforces_content_size_limit);
    tcase_add_test(save, test_notes_save_concurrent_same_note_creates_exactly_once);
    suite_add_tcase(s, save);

    TCase *tool = tcase_create("tool");
    tcase_add_checked_fixture(tool, setup, teardown);
    tcase_add_test(tool, test_notes_tool_saves_then_reports_already_saved);
    tcase_add_test(tool, test_notes_tool_uses_default_name_without_filename);
    tcase_add_test(tool, test_notes_tool_rejects_bad_fields_as_input_errors);
    tcase_add_test(tool, test_notes_tool_rejects_oversized_content_as_input_error);
    tcase_add_test(tool, test_notes_tool_reports_io_failure_as_system_error_without_content);
    tcase_add_test(tool, test_notes_tool_reports_read_only_directory_as_system_error);
    suite_add_tcase(s, tool);

    TCase *quota = tcase_create("quota");
    tcase_add_checked_fixture(quota, setup, teardown);
    tcase_add_test(quota, test_notes_quota_refuses_a_new_file_past_max_files);
    tcase_add_test(quota, test_notes_quota_refuses_a_note_past_max_bytes);
    tcase_add_test(quota, test_notes_quota_full_still_allows_resaving_the_same_note);
    tcase_add_test(quota, test_notes_quota_counts_what_the_directory_holds_at_first_use);
    tcase_add_test(quota, test_notes_usage_scan_sees_notes_removed_by_an_operator);
    tcase_add_test(quota, test_notes_usage_without_limits_counts_nothing);
    tcase_add_test(quota, test_notes_usage_scan_error_is_kept_and_fails_the_save);
    tcase_add_test(quota, test_notes_quota_concurrent_writers_never_overshoot_max_files);
    tcase_add_test(quota, test_notes_quota_concurrent_writers_never_overshoot_max_bytes);
    tcase_add_test(quota, test_notes_tool_reports_a_full_quota_as_an_input_error);
    tcase_add_test(quota, test_notes_quota_is_not_charged_when_the_write_fails);
    suite_add_tcase(s, quota);

    TCase *stale = tcase_create("stale");
    tcase_add_checked_fixture(stale, setup, teardown);
    tcase_add_test(stale, test_notes_host_tag_is_the_sanitised_host_name);
    tcase_add_test(stale, test_notes_remove_stale_temps_takes_leftovers_and_spares_live_saves);
    tcase_add_test(stale, test_notes_remove_stale_temps_reports_an_unreadable_directory);
    suite_add_tcase(s, stale);

    TCase *withdrawn = tcase_create("withdrawn");
    tcase_add_checked_fixture(withdrawn, setup, teardown);
    tcase_add_test(withdrawn, test_notes_save_withdrawn_before_it_starts_writes_nothing);
    tcase_add_test(withdrawn, test_notes_save_withdrawn_at_the_commit_point_removes_its_temp_file);
    tcase_add_test(withdrawn, test_notes_tool_reports_a_withdrawn_save_as_a_system_error);
    tcase_add_test(withdrawn, test_notes_job_of_a_finished_tool_call_publishes);
    tcase_add_test(withdrawn, test_notes_job_of_a_cancelled_tool_call_does_not_commit);
    suite_add_tcase(s, withdrawn);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(notes_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
