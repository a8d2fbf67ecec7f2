/* test_agent_netwatch.c - watching links and addresses through netlink
 * (netwatch.h) against the real kernel, in a network namespace of the
 * test's own: veth pairs (the kernel here may have no dummy links) and lo
 * change with ip(8); the hook must run once per change of the evaluated
 * state, with the right states, within a bounded wait, and never for the
 * same state; a burst that overruns the socket is read again. Needs root
 * (unshare(CLONE_NEWNET)); skips itself otherwise. */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "check.h"
#include "common/log.h"
#include "netwatch.h"

/* how long a change may take to be reported (the settle time is 50 ms;
 * the ASan build and a busy machine are slower) */
#define WAIT_MS 3000
/* how long nothing must happen to say that nothing happens */
#define QUIET_MS 300

static uv_loop_t loop;
static uv_timer_t deadline;
static bool deadline_hit;

typedef struct rec {
    int calls;
    agent_netstate before, now; /* of the last call */
    agent_netwatch *w;
    bool stop_in_hook;
} rec;

static void on_changed(void *arg, const agent_netstate *before, const agent_netstate *now)
{
    rec *r = arg;

    /* the hook sees a real change, and now is what the watch says */
    CHECK(agent_netstate_diff(before, now) != 0);
    CHECK(agent_netstate_diff(now, agent_netwatch_state(r->w)) == 0);
    if (r->calls > 0)
        CHECK(agent_netstate_diff(before, &r->now) == 0); /* before is the last now */
    r->calls++;
    r->before = *before;
    r->now = *now;
    if (r->stop_in_hook) {
        agent_netwatch_stop(r->w);
        r->w = NULL;
    }
}

static void on_deadline(uv_timer_t *t)
{
    deadline_hit = true;
}

/* Runs the loop until r has seen calls calls, or ms passed. */
static bool wait_calls_quietly(rec *r, int calls, int ms)
{
    deadline_hit = false;
    uv_update_time(&loop); /* the loop's clock stood still while ip ran */
    uv_timer_start(&deadline, on_deadline, (uint64_t)ms, 0);
    while (r->calls < calls && !deadline_hit)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&deadline);
    return r->calls >= calls;
}

static bool wait_calls(rec *r, int calls, int ms)
{
    if (wait_calls_quietly(r, calls, ms))
        return true;
    fprintf(stderr, "  waited %d ms for call %d: %d calls\n", ms, calls, r->calls);
    return false;
}

/* Runs the loop for ms; true when r saw no call meanwhile. */
static bool quiet(rec *r, int ms)
{
    int before = r->calls;

    wait_calls_quietly(r, before + 1, ms);
    if (r->calls != before)
        fprintf(stderr, "  unexpected call: now '%s' on '%s' reason '%s'\n", r->now.address,
                r->now.ifname, r->now.reason);
    return r->calls == before;
}

/* Runs the loop until the watch's state has this reason (the commands
 * behind it make several bursts), or ms passed. */
static bool wait_reason(rec *r, const char *reason, int ms)
{
    deadline_hit = false;
    uv_update_time(&loop); /* the loop's clock stood still while ip ran */
    uv_timer_start(&deadline, on_deadline, (uint64_t)ms, 0);
    while (strcmp(agent_netwatch_state(r->w)->reason, reason) != 0 && !deadline_hit)
        uv_run(&loop, UV_RUN_ONCE);
    uv_timer_stop(&deadline);
    if (strcmp(agent_netwatch_state(r->w)->reason, reason) != 0) {
        fprintf(stderr, "  waited %d ms for '%s': '%s'\n", ms, reason,
                agent_netwatch_state(r->w)->reason);
        return false;
    }
    return true;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "  '%s' exited %d\n", cmd, rc);
    return rc;
}

static int watch(const char *want, rec *r)
{
    agent_netwatch_hooks h = {.changed = on_changed, .arg = r};
    dpr_err err = DPR_ERR_INIT;
    int rc;

    memset(r, 0, sizeof(*r));
    rc = agent_netwatch_start(&loop, want, &h, &r->w, &err);
    if (rc < 0)
        fprintf(stderr, "  watching %s: %s\n", want, err.msg);
    return rc;
}

/* Stops r's watch and lets the loop close it. */
static void unwatch(rec *r)
{
    agent_netwatch_stop(r->w);
    r->w = NULL;
    uv_run(&loop, UV_RUN_NOWAIT);
}

TEST(invalid_want)
{
    agent_netwatch_hooks h = {.changed = on_changed};
    agent_netwatch *w = (agent_netwatch *)&h;
    dpr_err err = DPR_ERR_INIT;

    CHECK_EQ_INT(agent_netwatch_start(&loop, "0.0.0.0", &h, &w, &err), -EINVAL);
    CHECK(w == NULL);
    CHECK(strstr(err.msg, "'0.0.0.0' is a wildcard") != NULL);
    CHECK_EQ_INT(agent_netwatch_start(&loop, "eth0:1", &h, &w, NULL), -EINVAL);
    CHECK(w == NULL);
    agent_netwatch_stop(NULL);
}

/* A new namespace's lo is down and has no address; up, it has 127.0.0.1. */
TEST(loopback)
{
    rec a = {0}, n = {0};
    const agent_netstate *st;

    if (watch("127.0.0.1", &a) < 0 || watch("lo", &n) < 0)
        goto out;
    st = agent_netwatch_state(a.w);
    CHECK(!st->healthy);
    CHECK(strcmp(st->address, "127.0.0.1") == 0);
    CHECK(strcmp(st->reason, "address 127.0.0.1 is on no interface") == 0);
    st = agent_netwatch_state(n.w);
    CHECK(!st->healthy);
    CHECK(st->by_name);
    CHECK(strcmp(st->ifname, "lo") == 0);
    CHECK(strcmp(st->reason, "link lo is down") == 0);

    /* link, address and IPv6 events: one change each */
    CHECK_EQ_INT(sh("ip link set lo up"), 0);
    CHECK(wait_calls(&a, 1, WAIT_MS));
    CHECK(wait_calls(&n, 1, WAIT_MS));
    CHECK(a.now.healthy);
    CHECK(strcmp(a.now.ifname, "lo") == 0);
    CHECK_EQ_INT(a.now.prefixlen, 8);
    CHECK_EQ_INT(agent_netstate_diff(&a.before, &a.now),
                 AGENT_NETSTATE_ADDRESS | AGENT_NETSTATE_INTERFACE | AGENT_NETSTATE_LINK_UP |
                     AGENT_NETSTATE_HEALTHY | AGENT_NETSTATE_REASON);
    CHECK(n.now.healthy);
    CHECK(strcmp(n.now.address, "127.0.0.1") == 0);
    CHECK(quiet(&a, QUIET_MS));
    CHECK_EQ_INT(n.calls, 1);

    /* down: 127.0.0.1 stays, the link does not */
    CHECK_EQ_INT(sh("ip link set lo down"), 0);
    CHECK(wait_calls(&a, 2, WAIT_MS));
    CHECK(wait_calls(&n, 2, WAIT_MS));
    CHECK(!a.now.healthy);
    CHECK(a.now.have_address);
    CHECK(strcmp(a.now.reason, "link lo is down") == 0);
    CHECK_EQ_INT(agent_netstate_diff(&a.before, &a.now),
                 AGENT_NETSTATE_LINK_DOWN | AGENT_NETSTATE_UNHEALTHY | AGENT_NETSTATE_REASON);
    CHECK(strcmp(n.now.reason, "link lo is down") == 0);

    CHECK_EQ_INT(sh("ip link set lo up"), 0);
    CHECK(wait_calls(&a, 3, WAIT_MS));
    CHECK(a.now.healthy);
    CHECK(quiet(&a, QUIET_MS));
    CHECK_EQ_INT(n.calls, 3);
out:
    unwatch(&a);
    unwatch(&n);
}

/* node.address d0: the interface comes, goes up, gets addresses (the
 * primary serves, secondaries and later ones change nothing), loses its
 * carrier, is renamed, becomes a bridge port and is deleted. Link changes
 * come in two bursts (flags now, operstate from the kernel's linkwatch up
 * to a second later): waited for by their state; address changes are
 * synchronous: counted exactly. */
TEST(interface)
{
    rec r = {0};
    const agent_netstate *st;
    int calls;

    if (watch("d0", &r) < 0)
        goto out;
    st = agent_netwatch_state(r.w);
    CHECK(!st->healthy);
    CHECK(strcmp(st->reason, "no interface named d0") == 0);

    CHECK_EQ_INT(sh("ip link add d0 type veth peer name d0p"), 0);
    CHECK(wait_reason(&r, "link d0 is down", WAIT_MS));
    CHECK(strcmp(r.now.ifname, "d0") == 0);
    CHECK(r.now.ifindex > 0);
    CHECK(!r.now.link_up);
    CHECK(!r.now.have_address);

    /* up, but its peer is down: no carrier */
    CHECK_EQ_INT(sh("ip link set d0 up"), 0);
    CHECK(wait_reason(&r, "link d0 is down (no carrier)", WAIT_MS));
    CHECK(quiet(&r, QUIET_MS));

    CHECK_EQ_INT(sh("ip link set d0p up"), 0);
    CHECK(wait_reason(&r, "interface d0 has no IPv4 address", WAIT_MS));
    CHECK(r.now.link_up);
    CHECK(!r.now.healthy);
    CHECK(quiet(&r, QUIET_MS));

    calls = r.calls;
    CHECK_EQ_INT(sh("ip addr add 10.1.0.5/24 dev d0"), 0);
    CHECK(wait_calls(&r, calls + 1, WAIT_MS));
    CHECK(r.now.healthy);
    CHECK(strcmp(r.now.address, "10.1.0.5") == 0);
    CHECK_EQ_INT(r.now.prefixlen, 24);
    CHECK_EQ_INT(agent_netstate_diff(&r.before, &r.now),
                 AGENT_NETSTATE_ADDRESS | AGENT_NETSTATE_HEALTHY | AGENT_NETSTATE_REASON);

    /* secondaries (same subnet), another primary, a lower primary: the
     * node stays on 10.1.0.5 */
    CHECK_EQ_INT(sh("ip addr add 10.1.0.9/24 dev d0 && ip addr add 10.1.0.2/24 dev d0 && "
                    "ip addr add 10.2.0.1/16 dev d0 && ip addr add 10.0.0.7/24 dev d0"),
                 0);
    CHECK(quiet(&r, QUIET_MS));
    CHECK(strcmp(agent_netwatch_state(r.w)->address, "10.1.0.5") == 0);

    /* its address deleted (with its secondaries): the lowest primary left */
    calls = r.calls;
    CHECK_EQ_INT(sh("ip addr del 10.1.0.5/24 dev d0"), 0);
    CHECK(wait_calls(&r, calls + 1, WAIT_MS));
    CHECK(r.now.healthy);
    CHECK(strcmp(r.now.address, "10.0.0.7") == 0);
    CHECK_EQ_INT(r.now.prefixlen, 24);
    CHECK_EQ_INT(agent_netstate_diff(&r.before, &r.now), AGENT_NETSTATE_ADDRESS);
    CHECK(quiet(&r, QUIET_MS));

    /* the peer goes down: d0 loses its carrier, keeps its address */
    calls = r.calls;
    CHECK_EQ_INT(sh("ip link set d0p down"), 0);
    CHECK(wait_calls(&r, calls + 1, WAIT_MS));
    CHECK(!r.now.link_up);
    CHECK(r.now.have_address);
    CHECK(strcmp(r.now.reason, "link d0 is down (no carrier)") == 0);
    CHECK_EQ_INT(agent_netstate_diff(&r.before, &r.now),
                 AGENT_NETSTATE_LINK_DOWN | AGENT_NETSTATE_UNHEALTHY | AGENT_NETSTATE_REASON);
    CHECK(quiet(&r, QUIET_MS));
    calls = r.calls;
    CHECK_EQ_INT(sh("ip link set d0p up"), 0);
    CHECK(wait_calls(&r, calls + 1, WAIT_MS));
    CHECK(r.now.healthy);
    CHECK(strcmp(r.now.address, "10.0.0.7") == 0);
    CHECK_EQ_INT(agent_netstate_diff(&r.before, &r.now),
                 AGENT_NETSTATE_LINK_UP | AGENT_NETSTATE_HEALTHY | AGENT_NETSTATE_REASON);
    CHECK(quiet(&r, QUIET_MS));

    /* set down by an operator, and up again */
    calls = r.calls;
    CHECK_EQ_INT(sh("ip link set d0 down"), 0);
    CHECK(wait_calls(&r, calls + 1, WAIT_MS));
    CHECK(strcmp(r.now.reason, "link d0 is down") == 0);
    CHECK(quiet(&r, QUIET_MS));
    CHECK_EQ_INT(sh("ip link set d0 up"), 0);
    CHECK(wait_reason(&r, "", WAIT_MS));
    CHECK(quiet(&r, QUIET_MS));

    /* renamed: no d0 any more; renamed back: the same link again */
    CHECK_EQ_INT(sh("ip link set d0 down && ip link set d0 name d9 && ip link set d9 up"), 0);
    CHECK(wait_reason(&r, "no interface named d0", WAIT_MS));
    st = agent_netwatch_state(r.w);
    CHECK(strcmp(st->address, "") == 0);
    CHECK(strcmp(st->ifname, "") == 0);
    CHECK_EQ_INT(st->ifindex, 0);
    CHECK(quiet(&r, QUIET_MS));
    CHECK_EQ_INT(sh("ip link set d9 down && ip link set d9 name d0 && ip link set d0 up"), 0);
    CHECK(wait_reason(&r, "", WAIT_MS));
    st = agent_netwatch_state(r.w);
    CHECK(st->healthy);
    CHECK(strcmp(st->address, "10.0.0.7") == 0);
    CHECK(strcmp(st->ifname, "d0") == 0);
    CHECK(quiet(&r, QUIET_MS));

    /* a bridge port: AF_BRIDGE records of d0 come and go; d0 and its
     * addresses stay what they are */
    CHECK_EQ_INT(sh("ip link add br0 type bridge && ip link set br0 up && "
                    "ip link set d0 master br0"),
                 0);
    CHECK(quiet(&r, QUIET_MS));
    CHECK_EQ_INT(sh("ip link set d0 nomaster && ip link del br0"), 0);
    CHECK(quiet(&r, QUIET_MS));
    st = agent_netwatch_state(r.w);
    CHECK(st->healthy);
    CHECK(strcmp(st->address, "10.0.0.7") == 0);

    /* deleted (with its peer): gone, with its addresses */
    calls = r.calls;
    CHECK_EQ_INT(sh("ip link del d0"), 0);
    CHECK(wait_calls(&r, calls + 1, WAIT_MS));
    CHECK(strcmp(r.now.reason, "no interface named d0") == 0);
    CHECK(strcmp(r.now.address, "") == 0);
    CHECK_EQ_INT(r.now.ifindex, 0);
    CHECK(quiet(&r, QUIET_MS));

    /* a new d0 has none of the old addresses */
    CHECK_EQ_INT(sh("ip link add d0 type veth peer name d0p && ip link set d0p up && "
                    "ip link set d0 up"),
                 0);
    CHECK(wait_reason(&r, "interface d0 has no IPv4 address", WAIT_MS));
    CHECK_EQ_INT(sh("ip link del d0"), 0);
    CHECK(wait_reason(&r, "no interface named d0", WAIT_MS));
out:
    unwatch(&r);
}

/* node.address 10.3.0.1 moves from e0 to e1, then e1 vanishes. */
TEST(literal_moves)
{
    rec r = {0};

    CHECK_EQ_INT(sh("ip link add e0 type veth peer name e0p && ip link add e1 type veth peer "
                    "name e1p && for l in e0 e0p e1 e1p; do ip link set $l up || exit 1; done && "
                    "ip addr add 10.3.0.1/24 dev e0"),
                 0);
    if (watch("10.3.0.1", &r) < 0)
        goto out;
    CHECK(agent_netwatch_state(r.w)->healthy);
    CHECK(strcmp(agent_netwatch_state(r.w)->ifname, "e0") == 0);

    /* on both for a moment: it stays on e0 */
    CHECK_EQ_INT(sh("ip addr add 10.3.0.1/24 dev e1"), 0);
    CHECK(quiet(&r, QUIET_MS));
    CHECK_EQ_INT(sh("ip addr del 10.3.0.1/24 dev e0"), 0);
    CHECK(wait_calls(&r, 1, WAIT_MS));
    CHECK(r.now.healthy);
    CHECK(strcmp(r.now.ifname, "e1") == 0);
    CHECK(strcmp(r.now.address, "10.3.0.1") == 0);
    CHECK_EQ_INT(agent_netstate_diff(&r.before, &r.now), AGENT_NETSTATE_INTERFACE);
    CHECK(quiet(&r, QUIET_MS));

    CHECK_EQ_INT(sh("ip link del e1"), 0);
    CHECK(wait_calls(&r, 2, WAIT_MS));
    CHECK(!r.now.healthy);
    CHECK(strcmp(r.now.reason, "address 10.3.0.1 is on no interface") == 0);
    CHECK(quiet(&r, QUIET_MS));
out:
    unwatch(&r);
    sh("ip link del e0");
}

/* Tens of thousands of events while the loop does not read: the socket
 * overruns, the caches are read again, the state is right. The events
 * queued before the overrun are older than what is read again: an address
 * added then (queued) and deleted later (dropped) must not come back. */
TEST(overrun)
{
    rec r = {0}, lit = {0};
    FILE *f;

    CHECK_EQ_INT(sh("ip link add o0 type veth peer name o0p && ip link set o0p up && "
                    "ip link set o0 up && ip addr add 10.5.0.1/16 dev o0"),
                 0);
    if (watch("o0", &r) < 0 || watch("10.6.0.1", &lit) < 0)
        goto out;
    CHECK(strcmp(agent_netwatch_state(r.w)->address, "10.5.0.1") == 0);
    CHECK(strcmp(agent_netwatch_state(lit.w)->reason, "address 10.6.0.1 is on no interface") == 0);
    f = popen("ip -batch -", "w");
    CHECK(f != NULL);
    if (!f)
        goto out;
    fprintf(f, "addr add 10.6.0.1/32 dev o0\n");
    for (int i = 0; i < 15000; i++)
        fprintf(f, "addr add 10.8.%d.%d/32 dev o0p\naddr del 10.8.%d.%d/32 dev o0p\n", i / 250,
                i % 250 + 1, i / 250, i % 250 + 1);
    fprintf(f, "addr del 10.6.0.1/32 dev o0\n");
    /* another subnet: deleting a primary deletes its secondaries */
    fprintf(f, "addr add 10.7.0.2/16 dev o0\naddr del 10.5.0.1/16 dev o0\n");
    CHECK_EQ_INT(pclose(f), 0);
    CHECK(wait_calls(&r, 1, WAIT_MS));
    CHECK(agent_netwatch_resyncs(r.w) >= 1);
    CHECK(r.now.healthy);
    CHECK(strcmp(r.now.address, "10.7.0.2") == 0);
    CHECK(quiet(&r, QUIET_MS));
    CHECK_EQ_INT(r.calls, 1);
    /* 10.6.0.1 came and went: nothing changed */
    CHECK(agent_netwatch_resyncs(lit.w) >= 1);
    CHECK_EQ_INT(lit.calls, 0);
    CHECK(strcmp(agent_netwatch_state(lit.w)->reason, "address 10.6.0.1 is on no interface") == 0);

    /* and both go on watching */
    CHECK_EQ_INT(sh("ip addr add 10.6.0.1/32 dev o0 && ip link set o0 down"), 0);
    CHECK(wait_calls(&r, 2, WAIT_MS));
    CHECK(strcmp(r.now.reason, "link o0 is down") == 0);
    CHECK(wait_calls(&lit, 1, WAIT_MS));
    CHECK(strcmp(lit.now.ifname, "o0") == 0);
    CHECK(strcmp(lit.now.reason, "link o0 is down") == 0);
out:
    unwatch(&r);
    unwatch(&lit);
    sh("ip link del o0");
}

/* The hook may stop the watch. */
TEST(stop_in_hook)
{
    rec r = {0};

    if (watch("s0", &r) < 0)
        return;
    r.stop_in_hook = true;
    CHECK_EQ_INT(sh("ip link add s0 type veth peer name s0p"), 0);
    CHECK(wait_calls(&r, 1, WAIT_MS));
    CHECK(r.w == NULL);
    CHECK_EQ_INT(sh("ip link set s0p up && ip link set s0 up && ip link del s0"), 0);
    CHECK(quiet(&r, QUIET_MS));
    CHECK_EQ_INT(r.calls, 1);
}

/* Every stopped watch closed its handles. */
TEST(loop_closes)
{
    uv_close((uv_handle_t *)&deadline, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

int main(void)
{
    if (geteuid() != 0) {
        printf("test_agent_netwatch: skipped: needs root (a network namespace of its own)\n");
        return check_summary("test_agent_netwatch");
    }
    if (unshare(CLONE_NEWNET) < 0) {
        printf("test_agent_netwatch: skipped: cannot make a network namespace: %s\n",
               strerror(errno));
        return check_summary("test_agent_netwatch");
    }
    dpr_log_open("test_agent_netwatch", true);
    uv_loop_init(&loop);
    uv_timer_init(&loop, &deadline);

    RUN(invalid_want);
    RUN(loopback);
    RUN(interface);
    RUN(literal_moves);
    RUN(overrun);
    RUN(stop_in_hook);
    RUN(loop_closes);
    return check_summary("test_agent_netwatch");
}
