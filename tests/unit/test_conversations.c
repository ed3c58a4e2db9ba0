/*
 * test_conversations.c — unit tests for the in-memory conversation store:
 * history round trip, one run per conversation, TTL with a fake clock, LRU
 * eviction that never touches busy conversations, trimming, sweep, and a
 * small multi-threaded run on shared ids.
 */
#include "agentd/conversations.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TTL_MS 1000

static json_t *user_text(const char *text)
{
    return json_pack("{s:s, s:s}", "role", "user", "content", text);
}

static json_t *assistant_text(const char *text)
{
    return json_pack("{s:s, s:[{s:s, s:s}]}", "role", "assistant", "content", "type", "text",
                     "text", text);
}

static json_t *assistant_tool_use(const char *id)
{
    return json_pack("{s:s, s:[{s:s, s:s, s:s, s:{}}]}", "role", "assistant", "content", "type",
                     "tool_use", "id", id, "name", "calculator", "input");
}

static json_t *user_tool_result(const char *id)
{
    return json_pack("{s:s, s:[{s:s, s:s, s:s}]}", "role", "user", "content", "type", "tool_result",
                     "tool_use_id", id, "content", "4");
}

/* A user turn written as text blocks rather than a string. */
static json_t *user_text_blocks(const char *text)
{
    return json_pack("{s:s, s:[{s:s, s:s}]}", "role", "user", "content", "type", "text", "text",
                     text);
}

/* A byte budget that never binds. */
#define BIG ((size_t)1 << 30)

/* A store bounded by count, ttl and messages only. */
static struct conv_store *store_new(int max_conversations, int64_t ttl_ms, int max_messages)
{
    return conv_store_new(&(struct conv_store_limits){.max_conversations = max_conversations,
                                                      .ttl_ms = ttl_ms,
                                                      .max_messages = max_messages,
                                                      .max_history_bytes = BIG,
                                                      .max_total_bytes = BIG});
}

/* A store bounded by bytes too. */
static struct conv_store *store_new_bytes(int max_conversations, size_t max_history_bytes,
                                          size_t max_total_bytes)
{
    return conv_store_new(&(struct conv_store_limits){.max_conversations = max_conversations,
                                                      .ttl_ms = TTL_MS,
                                                      .max_messages = 1000,
                                                      .max_history_bytes = max_history_bytes,
                                                      .max_total_bytes = max_total_bytes});
}

/* What one message counts for: its compact JSON serialization. */
static size_t msg_bytes(const json_t *m)
{
    char *text = json_dumps(m, JSON_COMPACT);
    size_t n;

    ck_assert_ptr_nonnull(text);
    n = strlen(text);
    free(text);
    return n;
}

/* The bytes of messages [from, end) of a history. */
static size_t range_bytes(const json_t *h, size_t from)
{
    size_t n = 0;

    for (size_t i = from; i < json_array_size(h); i++)
        n += msg_bytes(json_array_get(h, i));
    return n;
}

/* Builds an array from NULL-terminated, stolen message references. */
static json_t *history(json_t *first, ...)
{
    json_t *a = json_array();
    va_list ap;

    ck_assert_ptr_nonnull(a);
    va_start(ap, first);
    for (json_t *m = first; m; m = va_arg(ap, json_t *))
        ck_assert_int_eq(json_array_append_new(a, m), 0);
    va_end(ap);
    return a;
}

/* Acquires id, expects success, returns the history size, releases nothing. */
static size_t acquire_size(struct conv_store *s, const char *id, int64_t now_ms)
{
    json_t *msgs = NULL;

    ck_assert_int_eq(conv_store_acquire(s, id, now_ms, &msgs), 0);
    ck_assert(json_is_array(msgs));
    size_t n = json_array_size(msgs);
    json_decref(msgs);
    return n;
}

/* Stores a one-turn history under id (acquire + release). */
static void store_turn(struct conv_store *s, const char *id, const char *text, int64_t now_ms)
{
    json_t *msgs = NULL;

    ck_assert_int_eq(conv_store_acquire(s, id, now_ms, &msgs), 0);
    json_decref(msgs);
    msgs = history(user_text(text), assistant_text("ok"), NULL);
    conv_store_release(s, id, msgs, now_ms);
    json_decref(msgs);
}

START_TEST(test_conv_new_conversation_has_empty_history)
{
    struct conv_store *s = store_new(4, TTL_MS, 10);

    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(acquire_size(s, "c1", 0), 0);
    ck_assert_uint_eq(conv_store_count(s), 1);
    conv_store_release(s, "c1", NULL, 0);
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_release_then_acquire_returns_stored_history)
{
    struct conv_store *s = store_new(4, TTL_MS, 10);
    json_t *got = NULL;
    json_t *want = history(user_text("2+2?"), assistant_tool_use("t1"), user_tool_result("t1"),
                           assistant_text("4"), NULL);

    ck_assert_int_eq(conv_store_acquire(s, "c1", 0, &got), 0);
    json_decref(got);
    conv_store_release(s, "c1", want, 10);
    /* The store keeps its own copy: changing ours must not change it. */
    json_array_append_new(want, user_text("later"));

    ck_assert_int_eq(conv_store_acquire(s, "c1", 20, &got), 0);
    ck_assert_uint_eq(json_array_size(got), 4);
    json_array_remove(want, 4);
    ck_assert(json_equal(got, want));
    /* And what acquire hands out is ours to change. */
    json_array_clear(got);
    json_decref(got);
    conv_store_release(s, "c1", NULL, 30);
    ck_assert_uint_eq(acquire_size(s, "c1", 40), 4);
    json_decref(want);
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_second_run_on_busy_conversation_gets_ebusy)
{
    struct conv_store *s = store_new(4, TTL_MS, 10);
    json_t *msgs = NULL;

    ck_assert_uint_eq(acquire_size(s, "c1", 0), 0);
    msgs = (json_t *)0x1; /* must stay untouched on failure */
    ck_assert_int_eq(conv_store_acquire(s, "c1", 1, &msgs), -EBUSY);
    ck_assert_ptr_eq(msgs, (json_t *)0x1);
    ck_assert_uint_eq(acquire_size(s, "c2", 1), 0); /* other ids are unaffected */
    conv_store_release(s, "c1", NULL, 2);
    ck_assert_uint_eq(acquire_size(s, "c1", 3), 0); /* free again after release */
    conv_store_free(s);                             /* frees busy entries too */
}
END_TEST

START_TEST(test_conv_failed_run_keeps_old_history)
{
    struct conv_store *s = store_new(4, TTL_MS, 10);

    store_turn(s, "c1", "hello", 0);
    ck_assert_uint_eq(acquire_size(s, "c1", 10), 2);
    conv_store_release(s, "c1", NULL, 20);
    ck_assert_uint_eq(acquire_size(s, "c1", 30), 2);
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_history_expires_after_ttl_idle)
{
    struct conv_store *s = store_new(4, TTL_MS, 10);

    json_t *msgs = history(user_text("q"), assistant_text("a"), NULL);

    store_turn(s, "c1", "hello", 1000);
    /* Idle exactly ttl: still there; acquiring refreshes nothing until release. */
    ck_assert_uint_eq(acquire_size(s, "c1", 1000 + TTL_MS), 2);
    conv_store_release(s, "c1", msgs, 5000);
    /* Storing a history refreshed last use to 5000; a failed run refreshes nothing, so idle
     * ttl + 1 after 5000 the conversation is treated as absent. */
    ck_assert_uint_eq(acquire_size(s, "c1", 5000 + TTL_MS), 2);
    conv_store_release(s, "c1", NULL, 5000 + TTL_MS);
    ck_assert_uint_eq(acquire_size(s, "c1", 5000 + TTL_MS + 1), 0);
    conv_store_release(s, "c1", NULL, 5000 + TTL_MS + 1);
    json_decref(msgs);
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_full_store_evicts_least_recently_used_idle)
{
    struct conv_store *s = store_new(2, TTL_MS, 10);

    store_turn(s, "a", "a", 0);
    store_turn(s, "b", "b", 10);
    store_turn(s, "a", "a again", 20); /* a is now the most recently used */
    ck_assert_uint_eq(conv_store_count(s), 2);

    store_turn(s, "c", "c", 30); /* a third history: b goes */
    ck_assert_uint_eq(conv_store_count(s), 2);

    ck_assert_uint_eq(acquire_size(s, "a", 40), 2); /* a survived */
    conv_store_release(s, "a", NULL, 40);
    ck_assert_uint_eq(acquire_size(s, "b", 50), 0); /* b was evicted */
    conv_store_release(s, "b", NULL, 50);
    ck_assert_uint_eq(acquire_size(s, "c", 60), 2);
    conv_store_release(s, "c", NULL, 60);
    ck_assert_uint_eq(acquire_size(s, "a", 70), 2);
    conv_store_release(s, "a", NULL, 70);
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_busy_conversations_are_never_evicted)
{
    struct conv_store *s = store_new(2, TTL_MS, 10);
    json_t *msgs = (json_t *)0x1;

    store_turn(s, "a", "a", 0);
    ck_assert_uint_eq(acquire_size(s, "a", 1), 2);
    ck_assert_uint_eq(acquire_size(s, "b", 2), 0);
    /* Both busy, even though "a" is long expired by now. */
    ck_assert_int_eq(conv_store_acquire(s, "c", 100000, &msgs), -ENOSPC);
    ck_assert_ptr_eq(msgs, (json_t *)0x1);
    ck_assert_uint_eq(conv_store_count(s), 2);
    ck_assert_uint_eq(conv_store_sweep(s, 100000), 0);

    /* The failed run leaves "a" as it was: idle, last used at 0, expired by now. A new id in
     * a full store drops it (only expired conversations go before a history is stored). */
    conv_store_release(s, "a", NULL, 100001);
    ck_assert_uint_eq(acquire_size(s, "c", 100002), 0);
    ck_assert_int_eq(conv_store_acquire(s, "b", 100003, &msgs), -EBUSY);
    ck_assert_uint_eq(conv_store_count(s), 2);
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_failed_run_neither_refreshes_ttl_nor_lru_position)
{
    struct conv_store *s = store_new(2, TTL_MS, 10);

    store_turn(s, "a", "a", 0);
    store_turn(s, "b", "b", 10);
    /* A failed run on "a" late in its life: "a" keeps last use 0 and stays least recent. */
    ck_assert_uint_eq(acquire_size(s, "a", 900), 2);
    conv_store_release(s, "a", NULL, 950);
    store_turn(s, "c", "c", 960); /* a third history: the least recently used goes */
    ck_assert_uint_eq(conv_store_count(s), 2);
    ck_assert_uint_eq(acquire_size(s, "b", 970), 2); /* b survived */
    conv_store_release(s, "b", NULL, 970);
    ck_assert_uint_eq(acquire_size(s, "a", 980), 0); /* a was the one evicted */
    conv_store_release(s, "a", NULL, 980);

    /* And its ttl still counts from its last stored history. */
    ck_assert_uint_eq(acquire_size(s, "b", 10 + TTL_MS), 2);
    conv_store_release(s, "b", NULL, 10 + TTL_MS);
    ck_assert_uint_eq(acquire_size(s, "b", 10 + TTL_MS + 1), 0);
    conv_store_release(s, "b", NULL, 10 + TTL_MS + 1);
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_failed_run_on_a_new_id_leaves_nothing_behind)
{
    struct conv_store *s = store_new(4, TTL_MS, 10);

    ck_assert_uint_eq(acquire_size(s, "new", 0), 0);
    ck_assert_uint_eq(conv_store_count(s), 1); /* running */
    conv_store_release(s, "new", NULL, 1);
    ck_assert_uint_eq(conv_store_count(s), 0);
    /* An expired conversation whose run fails is gone as well: its history went at acquire. */
    store_turn(s, "old", "x", 0);
    ck_assert_uint_eq(acquire_size(s, "old", TTL_MS + 1), 0);
    conv_store_release(s, "old", NULL, TTL_MS + 2);
    ck_assert_uint_eq(conv_store_count(s), 0);
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_failing_requests_with_fresh_ids_evict_no_real_conversation)
{
    enum { N = 16 };
    struct conv_store *s = store_new(N, TTL_MS, 10);
    char id[32];

    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "real-%d", i);
        store_turn(s, id, "hello", i);
    }
    for (int i = 0; i < 10 * N; i++) {
        snprintf(id, sizeof(id), "cheap-%d", i);
        ck_assert_uint_eq(acquire_size(s, id, 100 + i), 0);
        conv_store_release(s, id, NULL, 100 + i);
    }
    ck_assert_uint_eq(conv_store_count(s), N);
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "real-%d", i);
        ck_assert_uint_eq(acquire_size(s, id, 500), 2);
        conv_store_release(s, id, NULL, 500);
    }
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_trim_drops_front_to_a_user_text_start)
{
    struct conv_store *s = store_new(4, TTL_MS, 4);
    json_t *got = NULL;
    json_t *full = history(user_text("q1"), assistant_tool_use("t1"), user_tool_result("t1"),
                           assistant_text("a1"), user_text("q2"), assistant_tool_use("t2"),
                           user_tool_result("t2"), assistant_text("a2"), NULL);

    ck_assert_uint_eq(acquire_size(s, "c", 0), 0);
    /* The last 4 are [q2, tool_use, tool_result, a2]: already a user-text start. */
    conv_store_release(s, "c", full, 1);
    ck_assert_int_eq(conv_store_acquire(s, "c", 2, &got), 0);
    ck_assert_uint_eq(json_array_size(got), 4);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(got, 0), "content")), "q2");
    json_decref(got);

    /* One more message: the last 4 are [tool_use, tool_result, a2, tail] — no
     * user text message to start from, so the history becomes empty. */
    json_array_append_new(full, assistant_text("tail"));
    conv_store_release(s, "c", full, 3);
    ck_assert_uint_eq(acquire_size(s, "c", 4), 0);
    conv_store_release(s, "c", NULL, 4);
    json_decref(full);
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_trim_skips_tool_result_and_assistant_starts)
{
    struct conv_store *s = store_new(4, TTL_MS, 5);
    json_t *got = NULL;
    json_t *full =
        history(user_text("q1"), assistant_tool_use("t1"), user_tool_result("t1"),
                assistant_text("a1"), user_text_blocks("q2"), assistant_text("a2"), NULL);

    ck_assert_uint_eq(acquire_size(s, "c", 0), 0);
    /* Last 5 = [tool_use, tool_result, a1, q2-blocks, a2] → starts at q2 (text blocks). */
    conv_store_release(s, "c", full, 1);
    ck_assert_int_eq(conv_store_acquire(s, "c", 2, &got), 0);
    ck_assert_uint_eq(json_array_size(got), 2);
    ck_assert(json_equal(json_array_get(got, 0), json_array_get(full, 4)));
    json_decref(got);
    conv_store_release(s, "c", NULL, 3);
    json_decref(full);
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_short_history_is_not_trimmed)
{
    struct conv_store *s = store_new(4, TTL_MS, 5);
    json_t *full = history(user_text("q1"), assistant_tool_use("t1"), user_tool_result("t1"),
                           assistant_text("a1"), NULL);

    ck_assert_uint_eq(acquire_size(s, "c", 0), 0);
    conv_store_release(s, "c", full, 1);
    ck_assert_uint_eq(acquire_size(s, "c", 2), 4);
    conv_store_release(s, "c", NULL, 3);
    json_decref(full);
    conv_store_free(s);
}
END_TEST

/* Stores `h` under id (acquire + release) at now_ms. */
static void store_history(struct conv_store *s, const char *id, const json_t *h, int64_t now_ms)
{
    json_t *msgs = NULL;

    ck_assert_int_eq(conv_store_acquire(s, id, now_ms, &msgs), 0);
    json_decref(msgs);
    conv_store_release(s, id, h, now_ms);
}

/* Acquires id, checks the history equals messages [from, end) of `full`, releases. */
static void assert_history_is_tail(struct conv_store *s, const char *id, const json_t *full,
                                   size_t from)
{
    json_t *got = NULL;

    ck_assert_int_eq(conv_store_acquire(s, id, 1, &got), 0);
    ck_assert_uint_eq(json_array_size(got), json_array_size(full) - from);
    for (size_t i = from; i < json_array_size(full); i++)
        ck_assert(json_equal(json_array_get(got, i - from), json_array_get(full, i)));
    json_decref(got);
    conv_store_release(s, id, NULL, 1);
}

START_TEST(test_conv_trim_by_bytes_drops_oldest_turns_to_a_user_text_start)
{
    json_t *full = history(user_text("q1"), assistant_text("a1"), user_text("q2"),
                           assistant_tool_use("t2"), user_tool_result("t2"), assistant_text("a2"),
                           user_text("q3"), assistant_text("a3"), NULL);
    /* Room for the last five messages, [tool_use, tool_result, a2, q3, a3]; a history may not
     * start with an assistant turn nor with a tool_result, so it starts at q3. */
    size_t cap = range_bytes(full, 3);
    struct conv_store *s = store_new_bytes(4, cap, BIG);

    store_history(s, "c", full, 0);
    assert_history_is_tail(s, "c", full, 6);

    /* Exactly the bytes of [q2 .. a3]: kept whole, from q2. */
    conv_store_free(s);
    s = store_new_bytes(4, range_bytes(full, 2), BIG);
    store_history(s, "c", full, 0);
    assert_history_is_tail(s, "c", full, 2);

    /* One byte less and [q2 .. a3] no longer fits: the next user text start is q3. */
    conv_store_free(s);
    s = store_new_bytes(4, range_bytes(full, 2) - 1, BIG);
    store_history(s, "c", full, 0);
    assert_history_is_tail(s, "c", full, 6);
    conv_store_free(s);
    json_decref(full);
}
END_TEST

START_TEST(test_conv_trim_by_bytes_never_keeps_a_tool_result_without_its_tool_use)
{
    json_t *full =
        history(user_text("q1"), assistant_tool_use("t1"), user_tool_result("t1"),
                assistant_tool_use("t2"), user_tool_result("t2"), assistant_text("a1"), NULL);
    /* Room for everything after the first tool_use: no user text start in there. */
    struct conv_store *s = store_new_bytes(4, range_bytes(full, 2), BIG);

    store_history(s, "c", full, 0);
    assert_history_is_tail(s, "c", full, json_array_size(full)); /* empty */
    ck_assert_uint_eq(conv_store_count(s), 1);                   /* the conversation stays */
    conv_store_free(s);
    json_decref(full);
}
END_TEST

START_TEST(test_conv_history_within_the_byte_cap_is_kept_whole)
{
    json_t *full = history(user_text("q1"), assistant_tool_use("t1"), user_tool_result("t1"),
                           assistant_text("a1"), NULL);
    struct conv_store *s = store_new_bytes(4, range_bytes(full, 0), BIG);

    store_history(s, "c", full, 0);
    assert_history_is_tail(s, "c", full, 0);
    conv_store_free(s);
    json_decref(full);
}
END_TEST

START_TEST(test_conv_total_bytes_evict_least_recently_used_idle)
{
    json_t *h = history(user_text("question"), assistant_text("answer"), NULL);
    size_t one = range_bytes(h, 0);
    /* Three histories fit, a fourth does not. */
    struct conv_store *s = store_new_bytes(100, BIG, 3 * one + one / 2);

    store_history(s, "a", h, 0);
    store_history(s, "b", h, 10);
    store_history(s, "c", h, 20);
    store_history(s, "a", h, 30); /* a is now the most recently used */
    ck_assert_uint_eq(conv_store_count(s), 3);
    store_history(s, "d", h, 40); /* b goes */
    ck_assert_uint_eq(conv_store_count(s), 3);
    ck_assert_uint_eq(acquire_size(s, "b", 50), 0);
    conv_store_release(s, "b", NULL, 50);
    ck_assert_uint_eq(acquire_size(s, "a", 60), 2);
    conv_store_release(s, "a", NULL, 60);
    ck_assert_uint_eq(acquire_size(s, "c", 70), 2);
    conv_store_release(s, "c", NULL, 70);
    ck_assert_uint_eq(acquire_size(s, "d", 80), 2);
    conv_store_release(s, "d", NULL, 80);
    conv_store_free(s);
    json_decref(h);
}
END_TEST

START_TEST(test_conv_total_bytes_never_evict_running_conversations)
{
    json_t *h = history(user_text("question"), assistant_text("answer"), NULL);
    size_t one = range_bytes(h, 0);
    struct conv_store *s = store_new_bytes(100, BIG, 2 * one);

    store_history(s, "a", h, 0);
    store_history(s, "b", h, 10);
    ck_assert_uint_eq(acquire_size(s, "a", 20), 2); /* a and b run */
    ck_assert_uint_eq(acquire_size(s, "b", 20), 2);
    /* c's history does not fit and nothing else may go: c is the one forgotten. */
    store_history(s, "c", h, 30);
    ck_assert_uint_eq(conv_store_count(s), 2);
    conv_store_release(s, "a", NULL, 40);
    /* a is idle again (and the least recently stored): c's next history evicts it. */
    store_history(s, "c", h, 50);
    ck_assert_uint_eq(conv_store_count(s), 2);
    conv_store_release(s, "b", NULL, 60);
    ck_assert_uint_eq(acquire_size(s, "c", 70), 2);
    conv_store_release(s, "c", NULL, 70);
    ck_assert_uint_eq(acquire_size(s, "a", 80), 0);
    conv_store_release(s, "a", NULL, 80);
    conv_store_free(s);
    json_decref(h);
}
END_TEST

START_TEST(test_conv_history_is_trimmed_to_the_total_cap_when_that_is_smaller)
{
    json_t *full =
        history(user_text("q1"), assistant_text("a1"), user_text("q2"), assistant_text("a2"), NULL);
    /* The per-conversation cap is larger than the whole store: the store's cap applies. */
    struct conv_store *s = store_new_bytes(4, BIG, range_bytes(full, 2));

    store_history(s, "c", full, 0);
    assert_history_is_tail(s, "c", full, 2);
    conv_store_free(s);
    json_decref(full);
}
END_TEST

START_TEST(test_conv_sweep_drops_only_expired_idle_entries)
{
    struct conv_store *s = store_new(8, 150, 10);

    store_turn(s, "t0", "x", 0);
    store_turn(s, "t100", "x", 100);
    store_turn(s, "t200", "x", 200);
    ck_assert_uint_eq(acquire_size(s, "busy", 0), 0); /* held, never released */

    ck_assert_uint_eq(conv_store_sweep(s, 150), 0); /* t0 idle exactly ttl: kept */
    ck_assert_uint_eq(conv_store_count(s), 4);
    ck_assert_uint_eq(conv_store_sweep(s, 251), 2); /* t0 (idle 251), t100 (idle 151) */
    ck_assert_uint_eq(conv_store_count(s), 2);
    ck_assert_uint_eq(acquire_size(s, "t200", 251), 2);
    conv_store_release(s, "t200", NULL, 300);
    ck_assert_uint_eq(conv_store_sweep(s, 100000), 1); /* t200; "busy" stays */
    ck_assert_uint_eq(conv_store_count(s), 1);
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_release_of_unknown_or_idle_id_is_a_noop)
{
    struct conv_store *s = store_new(4, TTL_MS, 10);
    json_t *other = history(user_text("intruder"), NULL);

    conv_store_release(s, "nobody", other, 0);
    ck_assert_uint_eq(conv_store_count(s), 0);
    store_turn(s, "c", "hello", 0);
    conv_store_release(s, "c", other, 1); /* not busy: must not replace history */
    ck_assert_uint_eq(acquire_size(s, "c", 2), 2);
    conv_store_release(s, "c", NULL, 3);
    json_decref(other);
    conv_store_free(s);
}
END_TEST

START_TEST(test_conv_disabled_store_returns_enotsup)
{
    struct conv_store *s = store_new(0, TTL_MS, 10);
    json_t *msgs = NULL;

    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(conv_store_acquire(s, "c", 0, &msgs), -ENOTSUP);
    ck_assert_ptr_null(msgs);
    conv_store_release(s, "c", NULL, 0);
    ck_assert_uint_eq(conv_store_sweep(s, 0), 0);
    ck_assert_ptr_null(conv_store_free(s));
}
END_TEST

START_TEST(test_conv_rejects_bad_arguments)
{
    struct conv_store *s = store_new(4, TTL_MS, 10);
    json_t *msgs = NULL;
    char long_id[256];

    memset(long_id, 'x', 193);
    long_id[193] = '\0';
    ck_assert_ptr_null(store_new(-1, TTL_MS, 10));
    ck_assert_ptr_null(store_new(4, 0, 10));
    ck_assert_ptr_null(store_new(4, TTL_MS, 0));
    ck_assert_ptr_null(store_new_bytes(4, 0, BIG));
    ck_assert_ptr_null(store_new_bytes(4, BIG, 0));
    ck_assert_ptr_null(conv_store_new(NULL));
    ck_assert_int_eq(conv_store_acquire(s, NULL, 0, &msgs), -EINVAL);
    ck_assert_int_eq(conv_store_acquire(s, "", 0, &msgs), -EINVAL);
    ck_assert_int_eq(conv_store_acquire(s, long_id, 0, &msgs), -EINVAL);
    ck_assert_int_eq(conv_store_acquire(s, "c", 0, NULL), -EINVAL);
    ck_assert_ptr_null(msgs);
    ck_assert_uint_eq(conv_store_count(s), 0);
    ck_assert_ptr_null(conv_store_free(NULL));
    ck_assert_uint_eq(conv_store_count(NULL), 0);
    conv_store_free(s);
}
END_TEST

/* --- threads --- */

#define THREADS    4
#define ROUNDS     400
#define SHARED_IDS 3

static const char *const shared_ids[SHARED_IDS] = {"alpha", "beta", "gamma"};

struct shared {
    struct conv_store *store;
    atomic_int holders[SHARED_IDS];   /* runs currently inside acquire..release */
    atomic_int overlaps;              /* times two runs held one id at once */
    atomic_int completed[SHARED_IDS]; /* successful runs per id */
    atomic_int unexpected;            /* errors other than -EBUSY */
    int thread_no[THREADS];
};

static struct shared g;

static void *worker(void *arg)
{
    int t = *(int *)arg;

    for (int i = 0; i < ROUNDS; i++) {
        int k = (t + i) % SHARED_IDS;
        json_t *msgs = NULL;
        int r = conv_store_acquire(g.store, shared_ids[k], i, &msgs);
        if (r == -EBUSY)
            continue;
        if (r != 0) {
            atomic_fetch_add(&g.unexpected, 1);
            continue;
        }
        if (atomic_fetch_add(&g.holders[k], 1) != 0)
            atomic_fetch_add(&g.overlaps, 1);
        /* Each run appends one user turn: a lost update shows as a short history. */
        json_array_append_new(msgs, user_text("turn"));
        atomic_fetch_sub(&g.holders[k], 1);
        atomic_fetch_add(&g.completed[k], 1);
        conv_store_release(g.store, shared_ids[k], msgs, i);
        json_decref(msgs);
    }
    return NULL;
}

START_TEST(test_conv_concurrent_runs_on_shared_ids_lose_no_turn)
{
    pthread_t th[THREADS];

    memset(&g, 0, sizeof(g));
    g.store = store_new(SHARED_IDS, 1000000, THREADS * ROUNDS);
    ck_assert_ptr_nonnull(g.store);
    for (int t = 0; t < THREADS; t++) {
        g.thread_no[t] = t;
        ck_assert_int_eq(pthread_create(&th[t], NULL, worker, &g.thread_no[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);

    ck_assert_int_eq(atomic_load(&g.unexpected), 0);
    ck_assert_int_eq(atomic_load(&g.overlaps), 0);
    for (int k = 0; k < SHARED_IDS; k++) {
        ck_assert_int_gt(atomic_load(&g.completed[k]), 0);
        ck_assert_uint_eq(acquire_size(g.store, shared_ids[k], ROUNDS),
                          (size_t)atomic_load(&g.completed[k]));
    }
    ck_assert_uint_eq(conv_store_count(g.store), SHARED_IDS);
    g.store = conv_store_free(g.store);
}
END_TEST

static Suite *conversations_suite(void)
{
    Suite *s = suite_create("conversations");
    TCase *tc = tcase_create("store");
    TCase *mt = tcase_create("threads");

    tcase_add_test(tc, test_conv_new_conversation_has_empty_history);
    tcase_add_test(tc, test_conv_release_then_acquire_returns_stored_history);
    tcase_add_test(tc, test_conv_second_run_on_busy_conversation_gets_ebusy);
    tcase_add_test(tc, test_conv_failed_run_keeps_old_history);
    tcase_add_test(tc, test_conv_history_expires_after_ttl_idle);
    tcase_add_test(tc, test_conv_full_store_evicts_least_recently_used_idle);
    tcase_add_test(tc, test_conv_busy_conversations_are_never_evicted);
    tcase_add_test(tc, test_conv_failed_run_neither_refreshes_ttl_nor_lru_position);
    tcase_add_test(tc, test_conv_failed_run_on_a_new_id_leaves_nothing_behind);
    tcase_add_test(tc, test_conv_failing_requests_with_fresh_ids_evict_no_real_conversation);
    tcase_add_test(tc, test_conv_trim_drops_front_to_a_user_text_start);
    tcase_add_test(tc, test_conv_trim_skips_tool_result_and_assistant_starts);
    tcase_add_test(tc, test_conv_short_history_is_not_trimmed);
    tcase_add_test(tc, test_conv_trim_by_bytes_drops_oldest_turns_to_a_user_text_start);
    tcase_add_test(tc, test_conv_trim_by_bytes_never_keeps_a_tool_result_without_its_tool_use);
    tcase_add_test(tc, test_conv_history_within_the_byte_cap_is_kept_whole);
    tcase_add_test(tc, test_conv_total_bytes_evict_least_recently_used_idle);
    tcase_add_test(tc, test_conv_total_bytes_never_evict_running_conversations);
    tcase_add_test(tc, test_conv_history_is_trimmed_to_the_total_cap_when_that_is_smaller);
    tcase_add_test(tc, test_conv_sweep_drops_only_expired_idle_entries);
    tcase_add_test(tc, test_conv_release_of_unknown_or_idle_id_is_a_noop);
    tcase_add_test(tc, test_conv_disabled_store_returns_enotsup);
    tcase_add_test(tc, test_conv_rejects_bad_arguments);
    suite_add_tcase(s, tc);

    tcase_add_test(mt, test_conv_concurrent_runs_on_shared_ids_lose_no_turn);
    tcase_set_timeout(mt, 60);
    suite_add_tcase(s, mt);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(conversations_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
