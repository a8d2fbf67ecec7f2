/* test_agent_health.c - an instance's health from its unit state and the
 * cache-store's STATUS= (health.h): every state of the contract, failures
 * that stick across restarts until the instance serves again. */
#include <string.h>

#include "check.h"
#include "health.h"

#define OK AGENT_HEALTH_OK
#define RW AGENT_HEALTH_REFUSING_WRITES
#define LOST AGENT_HEALTH_FINDER_LOST_WORKER
#define FAILED AGENT_HEALTH_FAILED

TEST(names)
{
    CHECK(strcmp(agent_health_name(OK), "ok") == 0);
    CHECK(strcmp(agent_health_name(RW), "refusing-writes") == 0);
    CHECK(strcmp(agent_health_name(LOST), "finder-lost-worker") == 0);
    CHECK(strcmp(agent_health_name(FAILED), "failed") == 0);
}

TEST(status_texts)
{
    const char *serving = "serving on 127.0.0.1:7100: world-line 2, version 57, cut 55";

    CHECK_EQ_INT(agent_health_of("active", "running", serving, FAILED), OK);
    CHECK_EQ_INT(agent_health_of("active", "running", "refusing writes: checkpoints failing: "
                                 "cannot write ckpt-58.kv: No space left on device", OK), RW);
    CHECK_EQ_INT(agent_health_of("active", "running", "commits stopped: the finder does not "
                                 "know this worker (its state was lost?)", OK), LOST);
    CHECK_EQ_INT(agent_health_of("active", "running", "failed: cannot recover: ckpt-57.kv is "
                                 "damaged", OK), FAILED);
    CHECK_EQ_INT(agent_health_of("activating", "start", "start-up failed: Input/output error",
                                 OK), FAILED);
    /* a writer that recovered says so */
    CHECK_EQ_INT(agent_health_of("active", "running", serving, RW), OK);
    CHECK_EQ_INT(agent_health_of("active", "running", serving, LOST), OK);
    /* words elsewhere in the text do not count */
    CHECK_EQ_INT(agent_health_of("active", "running", "serving on x: 3 clients failed: no", RW),
                 OK);
    CHECK(agent_status_is_failure("failed: x"));
    CHECK(!agent_status_is_failure("serving: failed: x"));
    CHECK(!agent_status_is_failure(""));
}

TEST(unit_states)
{
    /* the unit failed (start-limit-hit, kill -9 seen in passing): failed,
     * whatever its last text */
    CHECK_EQ_INT(agent_health_of("failed", "failed", "serving on x", OK), FAILED);
    CHECK_EQ_INT(agent_health_of("failed", "failed", "", OK), FAILED);
    /* systemd restarts it after a failure (Restart=on-failure) */
    CHECK_EQ_INT(agent_health_of("activating", "auto-restart", "serving on x", OK), FAILED);
}

/* The sequence of a shard that cannot recover: systemd restarts it five
 * times, then gives up. Its health is failed throughout: one transition. */
TEST(failure_sticks_across_restarts)
{
    static const struct {
        const char *active, *sub, *text;
    } seq[] = {
        { "active", "running", "serving on x" },
        { "failed", "failed", "serving on x" },           /* kill -9, damage */
        { "activating", "auto-restart", "serving on x" },
        { "activating", "start", "" },                     /* start clears StatusText */
        { "activating", "start", "failed: cannot recover: ckpt-5.kv is damaged" },
        { "activating", "auto-restart", "failed: cannot recover: ckpt-5.kv is damaged" },
        { "activating", "start", "" },
        { "failed", "failed", "failed: cannot recover: ckpt-5.kv is damaged" },
    };
    agent_health h = OK;
    int transitions = 0;

    for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
        agent_health n = agent_health_of(seq[i].active, seq[i].sub, seq[i].text, h);
        transitions += n != h;
        h = n;
    }
    CHECK_EQ_INT(h, FAILED);
    CHECK_EQ_INT(transitions, 1);
    /* fixed, applied: reset, started, recovered */
    CHECK_EQ_INT(agent_health_of("inactive", "dead", "", h), FAILED);
    CHECK_EQ_INT(agent_health_of("activating", "start", "", h), FAILED);
    CHECK_EQ_INT(agent_health_of("active", "running", "", h), OK); /* READY=1 came */
    CHECK_EQ_INT(agent_health_of("active", "running", "serving on x", h), OK);
}

TEST(no_text_keeps_the_previous_health)
{
    CHECK_EQ_INT(agent_health_of("activating", "start", "", RW), RW);
    CHECK_EQ_INT(agent_health_of("inactive", "dead", "", OK), OK);
    CHECK_EQ_INT(agent_health_of("deactivating", "stop-sigterm", "", LOST), LOST);
    /* unknown (not read yet) */
    CHECK_EQ_INT(agent_health_of("", "", "", OK), OK);
}

int main(void)
{
    RUN(names);
    RUN(status_texts);
    RUN(unit_states);
    RUN(failure_sticks_across_restarts);
    RUN(no_text_keeps_the_previous_health);
    return check_summary("test_agent_health");
}
