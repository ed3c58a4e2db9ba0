/*
 * redis_scripts.h — the Lua scripts agentd runs in Redis, and what each one
 * takes and answers. Every script reads the time with Redis TIME, so the
 * replicas' own clocks never matter, and touches only the keys it is given
 * (all of one script's keys share a {hash tag}, so the layout works on Redis
 * Cluster as well). Times in arguments and answers are milliseconds; Redis
 * answers numbers as integers (Lua numbers are truncated toward zero, so
 * every wait below is rounded up before it is returned).
 *
 * Pure data: the texts are static and constant; nothing here does I/O.
 */
#ifndef AGENTD_REDIS_SCRIPTS_H
#define AGENTD_REDIS_SCRIPTS_H

/*
 * Limiter take: one token of a dependency's cluster-wide bucket (GCRA: a
 * theoretical arrival time `tat`; burst tokens at once, then one every
 * 1000 / rate ms), behind its 429 pause and single probe.
 * KEYS[1] the limiter hash (fields tat, pause, throttled, probe, gen).
 * ARGV rate_per_s (> 0), burst (>= 1), max_wait_ms (<= 0: only a token free now),
 *      probe_lease_ms (how long a probe holds its slot if it never reports).
 * Answers {code, ms, gen}:
 *   {0, wait_ms, 0}    granted: the attempt may start in wait_ms (reserved);
 *   {4, wait_ms, gen}  granted as the probe, number gen (report with probe_done);
 *   {1, wait_ms, 0}    refused: the wait would exceed max_wait_ms (nothing reserved);
 *   {2, left_ms, 0}    paused by a 429 for left_ms more;
 *   {3, 0, 0}          throttled and another replica's probe is out: ask again shortly.
 */
extern const char REDIS_SCRIPT_LIMIT_TAKE[];
#define REDIS_LIMIT_GRANTED   0
#define REDIS_LIMIT_REFUSED   1
#define REDIS_LIMIT_PAUSED    2
#define REDIS_LIMIT_PROBE_OUT 3
#define REDIS_LIMIT_PROBE     4

/*
 * Limiter pause: a 429 with retry-after pauses the dependency for every
 * replica until now + pause_ms (the later of the existing and the new
 * pause); the dependency is then throttled until a probe gets another answer,
 * and the probe out before it is forgotten (its report is ignored).
 * KEYS[1] the limiter hash. ARGV pause_ms (>= 1). Answers the pause left (ms).
 */
extern const char REDIS_SCRIPT_LIMIT_PAUSE[];

/*
 * Limiter probe done: probe number gen ended. recovered 1: it got an answer
 * other than 429, the throttle ends; 0: the next caller probes. Every probe
 * handed out and every pause takes a new number (field gen), so a report of
 * any probe but the latest (one whose lease ran out, or one from before a new
 * pause) changes nothing.
 * KEYS[1] the limiter hash. ARGV gen, recovered (0|1). Answers 1 when it
 * counted, 0 when ignored.
 */
extern const char REDIS_SCRIPT_LIMIT_PROBE_DONE[];

/*
 * Budget reserve: the hourly USD and token budgets of all replicas together, in
 * one-minute fields of one hash (u<minute> nano-USD, t<minute> tokens; a spend
 * leaves the window 59 to 60 minutes after it was counted, as spend.h). When
 * neither budget is reached, the call's worst case is counted in the current
 * minute and the answer says which.
 * KEYS[1] the budget hash. ARGV limit_nano_usd, limit_tokens (0 = that budget
 * off), nano_usd, tokens (the worst case).
 * Answers {1, minute} reserved, or {0, retry_after_ms} when a budget is spent
 * (the time until enough old usage leaves the window).
 */
extern const char REDIS_SCRIPT_SPEND_RESERVE[];

/*
 * Budget settle: takes back a reservation (when its minute still holds it) and
 * counts the real usage in the current minute.
 * KEYS[1] the budget hash. ARGV minute (-1: no reservation), held_nano_usd,
 * held_tokens, nano_usd, tokens. Answers 1.
 */
extern const char REDIS_SCRIPT_SPEND_SETTLE[];

/*
 * Idempotency-Key claim, for a run that is durable across replicas. KEYS[1]
 * the key's hash (state running|done, fp, owner, lease: the owner's lease end
 * on Redis's clock, cp: the run's last checkpoint, status, body). ARGV
 * fingerprint, owner, lease_ms, ttl_ms (how long the key is kept).
 * Answers {0} claimed (the key now runs for owner until lease_ms from now,
 * unless renewed), {1, retry_after_ms} running under a live lease (ms until it
 * lapses), {2} the key was used with another body, {3, status, body} finished:
 * replay this answer, {4, checkpoint} its owner's lease lapsed: owner takes the
 * run over from checkpoint ("" when it had none: start from the beginning).
 */
extern const char REDIS_SCRIPT_IDEM_CLAIM[];
/* Lease renewal of a running key. KEYS[1]; ARGV owner, lease_ms. Answers 1, or 0 when the
   key is no longer owner's running claim. */
extern const char REDIS_SCRIPT_IDEM_RENEW[];
/* A completed step: the run's state, and the lease renewed. KEYS[1]; ARGV owner, lease_ms,
   checkpoint. Answers 1, or 0 when the claim is not owner's any more (nothing is written). */
extern const char REDIS_SCRIPT_IDEM_CHECKPOINT[];
/* The owner lets go of a running key (shutdown): its lease ends now, so the next request with
   the key takes the run over at once. KEYS[1]; ARGV owner. Answers 1 or 0. */
extern const char REDIS_SCRIPT_IDEM_RELEASE[];
/* The answer of owner's run: kept for replay for ttl_ms (the checkpoint goes). KEYS[1]; ARGV
   owner, status, body, ttl_ms. Answers 1, or 0 when the claim is not owner's any more (nothing
   is written). */
extern const char REDIS_SCRIPT_IDEM_COMPLETE[];
/* The run's answer must not be replayed: the key is free again. KEYS[1]; ARGV owner. Answers 1
   or 0 (not owner's running claim: nothing changed). */
extern const char REDIS_SCRIPT_IDEM_ABANDON[];

/*
 * Conversation acquire: one run at a time per conversation, cluster-wide.
 * KEYS[1] the history hash (v version, h history JSON), KEYS[2] the lock.
 * ARGV owner, lease_ms. Answers {0, version, history} (history "" when none)
 * with the lock taken, or {1, retry_after_ms} when another run holds it.
 */
extern const char REDIS_SCRIPT_CONV_ACQUIRE[];
/* Lease renewal of the lock. KEYS[1] the lock; ARGV owner, lease_ms. Answers 1 or 0. */
extern const char REDIS_SCRIPT_CONV_RENEW[];
/*
 * Conversation commit: the turn's history replaces version `version` (then
 * version + 1) and the lock is released, atomically. KEYS history, lock.
 * ARGV owner, version, history, ttl_ms. Answers 1 committed, 0 the lock is not
 * owner's any more (nothing written), -1 the version moved on (nothing
 * written; lock released).
 */
extern const char REDIS_SCRIPT_CONV_COMMIT[];
/* The run failed: the lock goes, the history stays. KEYS[1] the lock; ARGV owner. 1 or 0. */
extern const char REDIS_SCRIPT_CONV_RELEASE[];

/*
 * Replica registry: this replica is alive now; replicas not seen for ttl_ms
 * are forgotten. KEYS[1] the registry sorted set. ARGV replica_id, ttl_ms.
 * Answers the number of replicas alive (>= 1).
 */
extern const char REDIS_SCRIPT_REGISTRY_BEAT[];

#endif
