/* test_agent_rollout.c - the roll-out's decisions (rollout.h): one at a
 * time in shard order, max_unavailable, min_ready_seconds, the partition
 * (a canary), pause, halting on a failed or late instance, and done. */
#include <string.h>

#include "check.h"
#include "rollout.h"

static agent_rollout_spec defaults(void)
{
    agent_rollout_spec ro;

    memset(&ro, 0, sizeof(ro));
    ro.max_unavailable = 1;
    ro.progress_deadline_seconds = 120;
    return ro;
}

/* n ready instances running old settings, ready since t=1000 */
static void fleet(agent_ro_inst *v, size_t n)
{
    memset(v, 0, n * sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        v[i].shard = (uint32_t)i;
        v[i].outdated = true;
        v[i].ready = true;
        v[i].ready_since_ms = 1000;
    }
}

/* One step over v[0..n) (name "kv"): the indices restarted as a bit mask,
 * or -1 when the step failed. */
static int step(const agent_ro_inst *v, size_t n, const agent_rollout_spec *ro, bool halted,
                uint64_t now, agent_ro_step *s)
{
    size_t next[8];
    int mask = 0;

    if (n > 8 || agent_rollout_step("kv", v, n, ro, halted, now, next, s) < 0)
        return -1;
    for (size_t i = 0; i < s->nrestart; i++)
        mask |= 1 << next[i];
    return mask;
}

TEST(one_at_a_time_in_shard_order)
{
    agent_rollout_spec ro = defaults();
    agent_ro_inst v[3];
    agent_ro_step s;

    fleet(v, 3);
    CHECK_EQ_INT(step(v, 3, &ro, false, 5000, &s), 0x1);
    CHECK_EQ_INT(s.phase, AGENT_RO_PROGRESSING);
    CHECK_EQ_INT(s.targets, 3);
    CHECK_EQ_INT(s.updated, 0);
    /* shard 0 restarted: busy, then not ready yet: nothing else */
    v[0].outdated = false;
    v[0].busy = true;
    v[0].ready = false;
    v[0].rolled_ms = 5000;
    CHECK_EQ_INT(step(v, 3, &ro, false, 5100, &s), 0x0);
    CHECK_EQ_INT(s.phase, AGENT_RO_PROGRESSING);
    CHECK_EQ_INT(s.updated, 1);
    v[0].busy = false;
    CHECK_EQ_INT(step(v, 3, &ro, false, 5200, &s), 0x0);
    CHECK(s.wake_ms == 5000 + 120000); /* its deadline */
    /* ready (min_ready 0): the next one */
    v[0].ready = true;
    v[0].ready_since_ms = 6000;
    CHECK_EQ_INT(step(v, 3, &ro, false, 6000, &s), 0x2);
    /* all updated and ready: done */
    for (size_t i = 0; i < 3; i++) {
        v[i].outdated = false;
        v[i].rolled_ms = 5000;
    }
    CHECK(step(v, 3, &ro, false, 9000, &s) >= 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_DONE);
    CHECK_EQ_INT(s.updated, 3);
    CHECK_EQ_INT(s.unavailable, 0);
}

TEST(min_ready_seconds)
{
    agent_rollout_spec ro = defaults();
    agent_ro_inst v[2];
    agent_ro_step s;

    ro.min_ready_seconds = 10;
    fleet(v, 2);
    v[0].outdated = false;
    v[0].rolled_ms = 2000;
    v[0].ready_since_ms = 3000;
    CHECK_EQ_INT(step(v, 2, &ro, false, 12999, &s), 0x0);
    CHECK(s.wake_ms == 13000);
    CHECK_EQ_INT(s.unavailable, 1);
    CHECK_EQ_INT(step(v, 2, &ro, false, 13000, &s), 0x2);
    /* the last one settling: not done yet */
    v[1].outdated = false;
    v[1].rolled_ms = 13000;
    v[1].ready_since_ms = 14000;
    CHECK(step(v, 2, &ro, false, 15000, &s) >= 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_PROGRESSING);
    CHECK(step(v, 2, &ro, false, 24000, &s) >= 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_DONE);
}

TEST(max_unavailable)
{
    agent_rollout_spec ro = defaults();
    agent_ro_inst v[5];
    agent_ro_step s;

    ro.max_unavailable = 2;
    fleet(v, 5);
    CHECK_EQ_INT(step(v, 5, &ro, false, 5000, &s), 0x3);
    /* shard 3 is down already (not ready): one slot left, taken by 0 */
    fleet(v, 5);
    v[3].ready = false;
    v[3].ready_since_ms = 0;
    CHECK_EQ_INT(step(v, 5, &ro, false, 5000, &s), 0x1);
    /* an instance that is down costs nothing to restart */
    fleet(v, 5);
    ro.max_unavailable = 1;
    v[0].ready = false;
    CHECK_EQ_INT(step(v, 5, &ro, false, 5000, &s), 0x1);
    /* no skipping: 1 is busy (a restart of old settings in flight) */
    fleet(v, 5);
    ro.max_unavailable = 3;
    v[1].busy = true;
    CHECK_EQ_INT(step(v, 5, &ro, false, 5000, &s), 0x1);
}

TEST(partition_is_a_canary)
{
    agent_rollout_spec ro = defaults();
    agent_ro_inst v[4];
    agent_ro_step s;

    ro.partition = 3;
    fleet(v, 4);
    CHECK_EQ_INT(step(v, 4, &ro, false, 5000, &s), 0x8);
    CHECK_EQ_INT(s.targets, 1);
    v[3].outdated = false;
    CHECK(step(v, 4, &ro, false, 6000, &s) >= 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_DONE); /* shards 0..2 stay as they are */
    CHECK_EQ_INT(s.nrestart, 0);
    CHECK_EQ_INT(s.updated, 1);
    /* a partition past the last shard updates nothing */
    ro.partition = 4;
    fleet(v, 4);
    CHECK(step(v, 4, &ro, false, 5000, &s) >= 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_DONE);
    CHECK_EQ_INT(s.targets, 0);
}

TEST(paused)
{
    agent_rollout_spec ro = defaults();
    agent_ro_inst v[2];
    agent_ro_step s;

    ro.paused = true;
    fleet(v, 2);
    CHECK(step(v, 2, &ro, false, 5000, &s) >= 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_PAUSED);
    CHECK_EQ_INT(s.nrestart, 0);
    /* nothing to update: paused or not, it is done */
    v[0].outdated = v[1].outdated = false;
    CHECK(step(v, 2, &ro, false, 5000, &s) >= 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_DONE);
}

TEST(halts_on_failure_and_deadline)
{
    agent_rollout_spec ro = defaults();
    agent_ro_inst v[3];
    agent_ro_step s;

    fleet(v, 3);
    v[0].outdated = false;
    v[0].ready = false;
    v[0].rolled_ms = 5000;
    v[0].failed = true;
    CHECK(step(v, 3, &ro, false, 5500, &s) >= 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_HALTED);
    CHECK_EQ_INT(s.halt, 0);
    CHECK_EQ_INT(s.nrestart, 0);
    CHECK(strstr(s.reason, "kv-0 failed after its update") != NULL);
    /* once halted: stays halted, nothing restarted, no new reason */
    CHECK(step(v, 3, &ro, true, 5600, &s) >= 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_HALTED);
    CHECK_EQ_INT(s.halt, -1);
    CHECK_EQ_INT(s.nrestart, 0);
    /* not failed, but not ready by its deadline */
    v[0].failed = false;
    ro.progress_deadline_seconds = 30;
    CHECK(step(v, 3, &ro, false, 34999, &s) >= 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_PROGRESSING);
    CHECK(s.wake_ms == 35000);
    CHECK(step(v, 3, &ro, false, 35000, &s) >= 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_HALTED);
    CHECK(strstr(s.reason, "kv-0 was not ready within 30 s") != NULL);
    /* an instance that failed before the roll-out touched it halts nothing */
    fleet(v, 3);
    v[2].ready = false;
    v[2].failed = true;
    CHECK(step(v, 3, &ro, false, 5000, &s) >= 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_PROGRESSING);
    CHECK_EQ_INT(s.halt, -1);
}

/* A cluster of agents: the other nodes' instances hold the order and
 * count against max_unavailable, and are never restarted here. */
TEST(other_nodes_instances)
{
    agent_rollout_spec ro = defaults();
    agent_ro_inst v[3];
    agent_ro_step s;

    fleet(v, 3);
    v[0].remote = v[2].remote = true; /* shard 1 is this node's */
    CHECK_EQ_INT(step(v, 3, &ro, false, 5000, &s), 0x0); /* shard 0 first, on its node */
    CHECK_EQ_INT(s.phase, AGENT_RO_PROGRESSING);
    v[0].outdated = false;
    v[0].ready = false; /* restarted there, not available yet */
    CHECK_EQ_INT(step(v, 3, &ro, false, 6000, &s), 0x0);
    CHECK_EQ_INT(s.unavailable, 1);
    v[0].ready = true;
    CHECK_EQ_INT(step(v, 3, &ro, false, 7000, &s), 0x2);
    /* a remote instance that fails halts nothing here (its node halts) */
    v[1].outdated = false;
    v[2].outdated = false;
    v[2].ready = false;
    v[2].failed = true;
    CHECK_EQ_INT(step(v, 3, &ro, false, 900000, &s), 0x0);
    CHECK_EQ_INT(s.halt, -1);
    CHECK_EQ_INT(s.phase, AGENT_RO_DONE);
}

TEST(bad_arguments)
{
    agent_rollout_spec ro = defaults();
    agent_ro_step s;
    size_t next[1];

    CHECK_EQ_INT(agent_rollout_step(NULL, NULL, 0, &ro, false, 0, next, &s), -22);
    CHECK_EQ_INT(agent_rollout_step("kv", NULL, 1, &ro, false, 0, next, &s), -22);
    CHECK_EQ_INT(agent_rollout_step("kv", NULL, 0, &ro, false, 0, next, &s), 0);
    CHECK_EQ_INT(s.phase, AGENT_RO_DONE);
    CHECK(strcmp(agent_ro_phase_name(AGENT_RO_HALTED), "halted") == 0);
}

int main(void)
{
    RUN(one_at_a_time_in_shard_order);
    RUN(min_ready_seconds);
    RUN(max_unavailable);
    RUN(partition_is_a_canary);
    RUN(paused);
    RUN(halts_on_failure_and_deadline);
    RUN(other_nodes_instances);
    RUN(bad_arguments);
    return check_summary("test_agent_rollout");
}
