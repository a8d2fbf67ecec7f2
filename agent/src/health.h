/*
 * health.h - an instance's health, from its unit's state and the
 * cache-store's own words (its sd_notify STATUS=, systemd's StatusText).
 *
 * The contract for STATUS= (docs/operations.md, "Health"): its first words
 * say what is wrong, if anything:
 *
 *     serving on ADDR: ...                         ok
 *     refusing writes: checkpoints failing: ...    refusing-writes
 *     commits stopped: the finder does not know... finder-lost-worker
 *     failed: <reason>                             failed (exits: cannot go on)
 *
 * A unit that failed, or that systemd is about to restart after a failure
 * (sub-state auto-restart), is failed whatever its text says. An empty text
 * (a new start cleared it; an implementation that sends none) says nothing
 * new: the previous health holds until the unit is active again.
 *
 *     h = agent_health_of(active_state, sub_state, status_text, rt->health);
 */
#ifndef AGENT_HEALTH_H
#define AGENT_HEALTH_H

#include <stdbool.h>

typedef enum agent_health {
    AGENT_HEALTH_OK = 0,
    AGENT_HEALTH_REFUSING_WRITES,
    AGENT_HEALTH_FINDER_LOST_WORKER,
    AGENT_HEALTH_FAILED,
} agent_health;

/* "ok", "refusing-writes", "finder-lost-worker", "failed". */
const char *agent_health_name(agent_health h);

/* The health shown by the unit's ActiveState, SubState and StatusText
 * (each "" when unknown); previous when they say nothing new. */
agent_health agent_health_of(const char *active_state, const char *sub_state,
                             const char *status_text, agent_health previous);

/* Does the text report a failure ("failed: ...", or dpr-kv's older
 * "start-up failed...")? */
bool agent_status_is_failure(const char *status_text);

#endif
