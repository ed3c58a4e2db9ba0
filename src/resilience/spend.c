/*
 * spend.c — hourly cost/token budget over a ring of one-minute slots (see
 * spend.h). Money is kept in integer nano-USD so that "spent exactly the
 * budget" is an exact comparison, not a floating-point near miss. Each slot
 * remembers which minute it holds, so a slot from an earlier lap is cleared
 * on reuse instead of needing a timer.
 */
#include "agentd/spend.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define NANO_PER_USD 1e9
/* Keeps token counts and prices far from int64 overflow once multiplied. */
#define MAX_TOKENS_PER_RECORD 1000000000000LL
#define MAX_PRICE_PER_MTOK    1e6
#define MAX_USD_PER_HOUR      1e9

struct spend_slot {
    int64_t index; /* minute number (now_ms / SPEND_SLOT_MS) this slot counts */
    int64_t nano_usd;
    int64_t tokens;
};

struct spend {
    pthread_mutex_t lock;
    double nano_usd_per_in_token, nano_usd_per_out_token;
    double nano_usd_per_cache_write_token, nano_usd_per_cache_read_token;
    int64_t limit[2]; /* [SPEND_USD] in nano-USD, [SPEND_TOKENS] in tokens; 0 = off */
    /* The limits as set (changed under the lock, read without it); limit[] is this replica's
       share of them, for `share` replicas. */
    _Atomic int64_t configured[2];
    int64_t share;
    int64_t newest_ms, newest_index;
    struct spend_slot slots[SPEND_SLOTS];
    bool exhausted[2];
    struct spend_transition ring[SPEND_TRANSITION_RING];
    size_t ring_head, ring_len;
};

/* Rounds toward minus infinity, so negative times map to slots consistently. */
static int64_t floor_div(int64_t a, int64_t d)
{
    int64_t q = a / d;
    return (a % d != 0 && (a < 0) != (d < 0)) ? q - 1 : q;
}

static double clamp_price(double p)
{
    if (!(p > 0)) /* also NaN */
        return 0;
    return p < MAX_PRICE_PER_MTOK ? p : MAX_PRICE_PER_MTOK;
}

static int64_t clamp_tokens(int64_t n)
{
    if (n < 0)
        return 0;
    return n < MAX_TOKENS_PER_RECORD ? n : MAX_TOKENS_PER_RECORD;
}

struct spend *spend_new(double price_in_per_mtok, double price_out_per_mtok, double usd_per_hour,
                        int64_t tokens_per_hour)
{
    struct spend *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return NULL;
    }
    /* USD per million tokens = nano-USD per thousandth of a token: x 1000 per token. */
    s->nano_usd_per_in_token = clamp_price(price_in_per_mtok) * 1000.0;
    s->nano_usd_per_out_token = clamp_price(price_out_per_mtok) * 1000.0;
    spend_set_cache_prices(s, -1, -1);
    s->share = 1;
    spend_set_budgets(s, usd_per_hour, tokens_per_hour);
    s->newest_ms = INT64_MIN;
    /* The minute of the earliest representable time: no slot arithmetic below it overflows. */
    s->newest_index = floor_div(INT64_MIN, SPEND_SLOT_MS);
    for (int i = 0; i < SPEND_SLOTS; i++)
        s->slots[i].index = INT64_MIN;
    return s;
}

struct spend *spend_free(struct spend *s)
{
    if (!s)
        return NULL;
    pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
}

void spend_set_cache_prices(struct spend *s, double write_per_mtok, double read_per_mtok)
{
    /* Written this way round so that NaN takes the default too. */
    s->nano_usd_per_cache_write_token =
        write_per_mtok >= 0 ? clamp_price(write_per_mtok) * 1000.0
                            : s->nano_usd_per_in_token * SPEND_CACHE_WRITE_MULTIPLIER;
    s->nano_usd_per_cache_read_token = read_per_mtok >= 0
                                           ? clamp_price(read_per_mtok) * 1000.0
                                           : s->nano_usd_per_in_token * SPEND_CACHE_READ_MULTIPLIER;
}

static int64_t usage_cost_nano(const struct spend *s, const struct spend_usage *u)
{
    int64_t in = clamp_tokens(u->input_tokens);
    /* The cache counts are part of input_tokens: never more than it, never negative. */
    int64_t write = clamp_tokens(u->cache_write_tokens);
    write = write < in ? write : in;
    int64_t read = clamp_tokens(u->cache_read_tokens);
    read = read < in - write ? read : in - write;
    return llround((double)(in - write - read) * s->nano_usd_per_in_token +
                   (double)write * s->nano_usd_per_cache_write_token +
                   (double)read * s->nano_usd_per_cache_read_token +
                   (double)clamp_tokens(u->output_tokens) * s->nano_usd_per_out_token);
}

static int64_t cost_nano(const struct spend *s, int64_t in_tokens, int64_t out_tokens)
{
    return usage_cost_nano(
        s, &(struct spend_usage){.input_tokens = in_tokens, .output_tokens = out_tokens});
}

int64_t spend_usage_cost_nano(const struct spend *s, const struct spend_usage *u)
{
    return usage_cost_nano(s, u);
}

double spend_usage_cost_usd(const struct spend *s, const struct spend_usage *u)
{
    return (double)usage_cost_nano(s, u) / NANO_PER_USD;
}

int64_t spend_cost_nano(const struct spend *s, int64_t in_tokens, int64_t out_tokens)
{
    return cost_nano(s, in_tokens, out_tokens);
}

double spend_cost_usd(const struct spend *s, int64_t in_tokens, int64_t out_tokens)
{
    return (double)cost_nano(s, in_tokens, out_tokens) / NANO_PER_USD;
}

static struct spend_slot *slot_at(struct spend *s, int64_t index)
{
    int64_t pos = index % SPEND_SLOTS;
    return &s->slots[pos < 0 ? pos + SPEND_SLOTS : pos];
}

/* Moves the clock to now_ms (never backwards); returns the effective now. Caller holds the lock. */
static int64_t advance(struct spend *s, int64_t now_ms)
{
    if (now_ms > s->newest_ms) {
        s->newest_ms = now_ms;
        s->newest_index = floor_div(now_ms, SPEND_SLOT_MS);
    }
    return s->newest_ms;
}

/* Usage of kind in slot `index`, 0 when the slot holds another minute. Caller holds the lock. */
static int64_t slot_usage(struct spend *s, int64_t index, enum spend_kind kind)
{
    const struct spend_slot *slot = slot_at(s, index);
    if (slot->index != index)
        return 0;
    return kind == SPEND_USD ? slot->nano_usd : slot->tokens;
}

static int64_t window_total(struct spend *s, enum spend_kind kind)
{
    int64_t total = 0;
    for (int64_t i = 0; i < SPEND_SLOTS; i++)
        total += slot_usage(s, s->newest_index - i, kind);
    return total;
}

/*
 * Time from now until the oldest slots have left the window far enough for
 * the total to be under the limit. The slot of minute j leaves when minute
 * j + SPEND_SLOTS begins.
 */
static int64_t time_until_under(struct spend *s, enum spend_kind kind, int64_t now, int64_t total)
{
    int64_t j = s->newest_index - (SPEND_SLOTS - 1);
    for (; j < s->newest_index; j++) {
        total -= slot_usage(s, j, kind);
        if (total < s->limit[kind])
            break;
    }
    return (j + SPEND_SLOTS) * SPEND_SLOT_MS - now;
}

static void push_transition(struct spend *s, const struct spend_transition *t)
{
    if (s->ring_len == SPEND_TRANSITION_RING) {
        s->ring_head = (s->ring_head + 1) % SPEND_TRANSITION_RING;
        s->ring_len--;
    }
    s->ring[(s->ring_head + s->ring_len) % SPEND_TRANSITION_RING] = *t;
    s->ring_len++;
}

/* Re-evaluates both budgets, queues any change, and returns the longest wait of a spent one
 * (0 = every budget available). Caller holds the lock. */
static int64_t evaluate(struct spend *s, int64_t now)
{
    int64_t wait = 0;

    for (int k = SPEND_USD; k <= SPEND_TOKENS; k++) {
        int64_t total = s->limit[k] ? window_total(s, (enum spend_kind)k) : 0;
        bool spent = s->limit[k] && total >= s->limit[k];

        if (spent) {
            int64_t w = time_until_under(s, (enum spend_kind)k, now, total);
            wait = w > wait ? w : wait;
        }
        if (spent != s->exhausted[k]) {
            double scale = k == SPEND_USD ? NANO_PER_USD : 1.0;
            struct spend_transition t = {
                .kind = (enum spend_kind)k,
                .exhausted = spent,
                .at_ms = now,
                .used = (double)total / scale,
                .limit = (double)s->limit[k] / scale,
            };
            s->exhausted[k] = spent;
            push_transition(s, &t);
        }
    }
    return wait;
}

/* The current minute's slot, cleared when it held an older minute. Caller holds the lock. */
static struct spend_slot *current_slot(struct spend *s)
{
    struct spend_slot *slot = slot_at(s, s->newest_index);
    if (slot->index != s->newest_index) {
        slot->index = s->newest_index;
        slot->nano_usd = 0;
        slot->tokens = 0;
    }
    return slot;
}

void spend_record(struct spend *s, int64_t now_ms, int64_t in_tokens, int64_t out_tokens)
{
    spend_settle(s, now_ms, NULL, in_tokens, out_tokens);
}

bool spend_reserve(struct spend *s, int64_t now_ms, int64_t in_tokens, int64_t out_tokens,
                   struct spend_hold *ret_hold, int64_t *ret_retry_after_ms)
{
    pthread_mutex_lock(&s->lock);
    int64_t now = advance(s, now_ms);
    int64_t wait = evaluate(s, now);
    if (wait == 0) {
        struct spend_slot *slot = current_slot(s);
        *ret_hold = (struct spend_hold){
            .held = true,
            .index = s->newest_index,
            .nano_usd = cost_nano(s, in_tokens, out_tokens),
            .tokens = clamp_tokens(in_tokens) + clamp_tokens(out_tokens),
        };
        slot->nano_usd += ret_hold->nano_usd;
        slot->tokens += ret_hold->tokens;
        evaluate(s, now);
    }
    pthread_mutex_unlock(&s->lock);
    if (wait > 0 && ret_retry_after_ms)
        *ret_retry_after_ms = wait;
    return wait == 0;
}

void spend_settle(struct spend *s, int64_t now_ms, struct spend_hold *hold, int64_t in_tokens,
                  int64_t out_tokens)
{
    spend_settle_usage(
        s, now_ms, hold,
        &(struct spend_usage){.input_tokens = in_tokens, .output_tokens = out_tokens});
}

void spend_settle_usage(struct spend *s, int64_t now_ms, struct spend_hold *hold,
                        const struct spend_usage *u)
{
    pthread_mutex_lock(&s->lock);
    int64_t now = advance(s, now_ms);
    if (hold && hold->held) {
        struct spend_slot *held = slot_at(s, hold->index);
        if (held->index == hold->index) {
            held->nano_usd -= hold->nano_usd;
            held->tokens -= hold->tokens;
        }
        *hold = (struct spend_hold){0};
    }
    struct spend_slot *slot = current_slot(s);
    slot->nano_usd += usage_cost_nano(s, u);
    slot->tokens += clamp_tokens(u->input_tokens) + clamp_tokens(u->output_tokens);
    evaluate(s, now);
    pthread_mutex_unlock(&s->lock);
}

void spend_limits(const struct spend *s, int64_t *ret_nano_usd, int64_t *ret_tokens)
{
    *ret_nano_usd = atomic_load(&s->configured[SPEND_USD]);
    *ret_tokens = atomic_load(&s->configured[SPEND_TOKENS]);
}

/* Caller holds the lock. */
static void apply_share(struct spend *s)
{
    for (int k = SPEND_USD; k <= SPEND_TOKENS; k++) {
        int64_t configured = atomic_load(&s->configured[k]), share = configured / s->share;
        s->limit[k] = configured > 0 && share < 1 ? 1 : share;
    }
}

void spend_set_share(struct spend *s, int replicas)
{
    pthread_mutex_lock(&s->lock);
    s->share = replicas > 1 ? replicas : 1;
    apply_share(s);
    pthread_mutex_unlock(&s->lock);
}

void spend_set_budgets(struct spend *s, double usd_per_hour, int64_t tokens_per_hour)
{
    int64_t usd = 0;
    if (usd_per_hour > 0) /* also rejects NaN */
        usd = llround((usd_per_hour < MAX_USD_PER_HOUR ? usd_per_hour : MAX_USD_PER_HOUR) *
                      NANO_PER_USD);
    pthread_mutex_lock(&s->lock);
    atomic_store(&s->configured[SPEND_USD], usd);
    atomic_store(&s->configured[SPEND_TOKENS], tokens_per_hour > 0 ? tokens_per_hour : 0);
    apply_share(s);
    pthread_mutex_unlock(&s->lock);
}

bool spend_allow(struct spend *s, int64_t now_ms, int64_t *ret_retry_after_ms)
{
    pthread_mutex_lock(&s->lock);
    int64_t wait = evaluate(s, advance(s, now_ms));
    pthread_mutex_unlock(&s->lock);
    if (wait > 0 && ret_retry_after_ms)
        *ret_retry_after_ms = wait;
    return wait == 0;
}

void spend_window(struct spend *s, int64_t now_ms, double *ret_usd, int64_t *ret_tokens)
{
    pthread_mutex_lock(&s->lock);
    advance(s, now_ms);
    int64_t nano = window_total(s, SPEND_USD), tokens = window_total(s, SPEND_TOKENS);
    pthread_mutex_unlock(&s->lock);
    if (ret_usd)
        *ret_usd = (double)nano / NANO_PER_USD;
    if (ret_tokens)
        *ret_tokens = tokens;
}

size_t spend_drain_transitions(struct spend *s, struct spend_transition *out, size_t cap)
{
    size_t n = 0;

    pthread_mutex_lock(&s->lock);
    while (n < cap && s->ring_len > 0) {
        out[n++] = s->ring[s->ring_head];
        s->ring_head = (s->ring_head + 1) % SPEND_TRANSITION_RING;
        s->ring_len--;
    }
    pthread_mutex_unlock(&s->lock);
    return n;
}

bool spend_run_over_limit(int64_t run_tokens, int64_t max)
{
    return max > 0 && run_tokens >= max;
}
