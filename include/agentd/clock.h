/*
 * clock.h — the clocks the I/O shell reads (src/core/clock.c), both in
 * milliseconds. Pure modules never call these: they take now_ms as an
 * argument.
 *
 * Safe from any thread at once; no I/O beyond clock_gettime(), no logging;
 * nothing here allocates or returns memory.
 */
#ifndef AGENTD_CLOCK_H
#define AGENTD_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds (CLOCK_MONOTONIC): for deadlines, timers, policies. */
int64_t clock_now_ms(void);
/* Wall-clock milliseconds since the epoch: for HTTP dates and log timestamps. */
int64_t clock_wall_ms(void);
/* Monotonic nanoseconds: for measuring short round trips (metrics). */
int64_t clock_now_ns(void);
/* Wall-clock nanoseconds since the epoch: for span timestamps (trace.h). */
int64_t clock_wall_ns(void);
/* Days since 1970-01-01 of the proleptic Gregorian date y-m-d (m 1..12, d 1..31; not checked),
   exact for any year (Howard Hinnant's days_from_civil). Pure arithmetic: reads no clock. */
int64_t clock_days_from_civil(int64_t y, int m, int d);

#endif
