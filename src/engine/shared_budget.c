/*
 * shared_budget.c — the cluster-wide hourly budget (see shared_budget.h).
 */
#include "agentd/shared_budget.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void budget_key(struct redis_pool *p, char key[SHARED_BUDGET_KEY_MAX])
{
    snprintf(key, SHARED_BUDGET_KEY_MAX, "%s{spend}", redis_pool_prefix(p));
}

static int budget_eval(struct redis_pool *p, int worker_index, enum redis_script_id id,
                       const int64_t *values, int n, struct redis_req *req)
{
    char key[SHARED_BUDGET_KEY_MAX], nums[5][24];
    const char *argv[6] = {key};
    size_t lens[6];

    if (!p || n > 5)
        return -ENOTCONN;
    budget_key(p, key);
    for (int i = 0; i < n; i++) {
        snprintf(nums[i], sizeof(nums[i]), "%lld", (long long)values[i]);
        argv[1 + i] = nums[i];
    }
    for (int i = 0; i <= n; i++)
        lens[i] = strlen(argv[i]);
    return redis_eval(redis_pool_link(p, worker_index), id, 1, n + 1, argv, lens, req);
}

int shared_budget_reserve(struct redis_pool *p, int worker_index, int64_t limit_nano_usd,
                          int64_t limit_tokens, int64_t nano_usd, int64_t tokens,
                          struct redis_req *req)
{
    const int64_t v[] = {limit_nano_usd, limit_tokens, nano_usd, tokens};
    return budget_eval(p, worker_index, REDIS_SPEND_RESERVE, v, 4, req);
}

enum shared_budget_verdict shared_budget_answer(int err, const redisReply *reply,
                                                int64_t *ret_value)
{
    if (err != 0 || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER)
        return SHARED_BUDGET_UNAVAILABLE;
    *ret_value = reply->element[1]->integer;
    if (reply->element[0]->integer == 1)
        return SHARED_BUDGET_RESERVED;
    if (*ret_value < 1)
        *ret_value = 1;
    return SHARED_BUDGET_SPENT;
}

void shared_budget_settle(struct redis_pool *p, int worker_index, int64_t minute,
                          int64_t held_nano_usd, int64_t held_tokens, int64_t nano_usd,
                          int64_t tokens)
{
    const int64_t v[] = {minute < 0 ? -1 : minute, held_nano_usd, held_tokens, nano_usd, tokens};
    budget_eval(p, worker_index, REDIS_SPEND_SETTLE, v, 5, NULL);
}
