/*
 * common/clock.h - the clocks. Intervals, deadlines and timeouts use the
 * monotonic clock (it never jumps); the wall clock is only for what people
 * read (logs, "last contact" in status, file times).
 */
#ifndef COMMON_CLOCK_H
#define COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t dpr_clock_ns(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CLOCK_MONOTONIC */
static inline uint64_t dpr_mono_ns(void)
{
    return dpr_clock_ns(CLOCK_MONOTONIC);
}
static inline uint64_t dpr_mono_ms(void)
{
    return dpr_mono_ns() / 1000000u;
}
/* CLOCK_REALTIME, since the epoch */
static inline uint64_t dpr_wall_ms(void)
{
    return dpr_clock_ns(CLOCK_REALTIME) / 1000000u;
}

/* A deadline timeout_ms from now (UINT64_MAX for a negative timeout: none),
 * and the milliseconds left until it, capped for poll(2). */
static inline uint64_t dpr_deadline_ms(int timeout_ms)
{
    return timeout_ms < 0 ? UINT64_MAX : dpr_mono_ms() + (uint64_t)timeout_ms;
}
static inline int dpr_ms_left(uint64_t deadline_ms)
{
    uint64_t now = dpr_mono_ms();

    if (deadline_ms == UINT64_MAX)
        return -1;
    if (deadline_ms <= now)
        return 0;
    return deadline_ms - now > 60000 ? 60000 : (int)(deadline_ms - now);
}

#endif
