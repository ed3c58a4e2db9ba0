/*
 * shared_budget.h — the hourly USD and token budgets of all replicas together,
 * kept in Redis (redis_scripts.h: budget reserve and settle). An LLM call
 * reserves its worst case before it is sent and settles its real usage after;
 * when Redis cannot answer, the caller falls back to its own spend.h guard,
 * which then holds this replica's share of the budgets.
 *
 * Threads: every function on the worker whose index it is given (the link is
 * that worker's). Nothing here logs.
 */
#ifndef AGENTD_SHARED_BUDGET_H
#define AGENTD_SHARED_BUDGET_H

#include <stdint.h>

#include <hiredis/hiredis.h>

#include "agentd/redis.h"

/* The key of the budget hash: prefix + "{spend}". */
#define SHARED_BUDGET_KEY_MAX 96

/* Asks to reserve nano_usd / tokens under the budgets (0 = off). 0: req->done() follows (read
   it with shared_budget_answer); < 0: nothing was asked (use the local guard). */
int shared_budget_reserve(struct redis_pool *p, int worker_index, int64_t limit_nano_usd,
                          int64_t limit_tokens, int64_t nano_usd, int64_t tokens,
                          struct redis_req *req);

enum shared_budget_verdict {
    SHARED_BUDGET_RESERVED,    /* *ret_value: the minute it was counted in */
    SHARED_BUDGET_SPENT,       /* *ret_value: ms until enough usage leaves the window */
    SHARED_BUDGET_UNAVAILABLE, /* no usable answer: use the local guard */
};
enum shared_budget_verdict shared_budget_answer(int err, const redisReply *reply,
                                                int64_t *ret_value);

/* Puts the real usage in place of a reservation (minute < 0: none). Fire and forget: when the
   link is down the reservation stays counted until it leaves the window (the budget errs on
   the safe side). */
void shared_budget_settle(struct redis_pool *p, int worker_index, int64_t minute,
                          int64_t held_nano_usd, int64_t held_tokens, int64_t nano_usd,
                          int64_t tokens);

#endif
