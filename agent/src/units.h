/*
 * units.h - cache-store units through systemd's D-Bus API (sd-bus on the
 * system bus, driven by the agent's libuv loop: the bus fd in a uv_poll,
 * sd-bus timeouts in a uv_timer).
 *
 * Starts, restarts, stops, resets and cleans dpr-cachestore@<instance>.service
 * with org.freedesktop.systemd1.Manager methods, sets its MemoryMax
 * (SetUnitProperties, runtime), and follows each watched unit's ActiveState,
 * SubState, NRestarts, MainPID, Result and StatusText (the cache-store's
 * sd_notify STATUS=) from PropertiesChanged signals (after Subscribe), never
 * by polling. Jobs are followed to their end with JobRemoved.
 *
 * When the bus cannot be reached, the module retries the connection every
 * few seconds and reports the reason; callers keep working without it.
 */
#ifndef AGENT_UNITS_H
#define AGENT_UNITS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define AGENT_UNIT_PREFIX "dpr-cachestore@"
#define AGENT_UNIT_SUFFIX ".service"

typedef enum agent_unit_op {
    AGENT_UNIT_START,
    AGENT_UNIT_RESTART,
    AGENT_UNIT_STOP,
    AGENT_UNIT_CLEAN,        /* remove the unit's StateDirectory (CleanUnit "state") */
    AGENT_UNIT_RESET_FAILED,
    AGENT_UNIT_SET_MEMORY_MAX, /* agent_units_set_memory_max */
    AGENT_UNIT_RELOAD,       /* ExecReload=: SIGHUP (dpr-kv reads its TLS files again) */
} agent_unit_op;

enum {
    AGENT_UP_ACTIVE = 1u << 0,
    AGENT_UP_SUB = 1u << 1,
    AGENT_UP_RESTARTS = 1u << 2,
    AGENT_UP_PID = 1u << 3,
    AGENT_UP_RESULT = 1u << 4,
    AGENT_UP_LOAD = 1u << 5,
    AGENT_UP_STARTED = 1u << 6,
    AGENT_UP_SERVICE_READ = 1u << 7, /* the Service interface was read (or failed to) */
    AGENT_UP_STATUS_TEXT = 1u << 8,
    AGENT_UP_MEMORY_MAX = 1u << 9,
    /* the first half of one change: systemd announces a change of a unit
     * with a PropertiesChanged signal of its Service interface (MainPID,
     * NRestarts, StatusText, ...) and then, always, one of its Unit
     * interface (ActiveState, SubState); the hook takes the fields of this
     * half and acts on the whole change when the second comes */
    AGENT_UP_FIRST_HALF = 1u << 10,
};

/* StatusText is kept up to this many bytes (longer ones are cut). */
#define AGENT_STATUS_TEXT_MAX 512
/* MemoryMax of a unit without a limit ("infinity"). */
#define AGENT_MEMORY_MAX_NONE UINT64_MAX

typedef struct agent_unit_props {
    unsigned have;           /* AGENT_UP_* bits: which fields below are set */
    char active_state[32];
    char sub_state[32];
    char result[32];
    char load_state[32];
    uint32_t n_restarts;
    uint32_t main_pid;
    uint64_t started_usec;   /* ExecMainStartTimestamp (CLOCK_REALTIME), 0: never */
    char status_text[AGENT_STATUS_TEXT_MAX]; /* StatusText: the last STATUS=, "" none */
    uint64_t memory_max;     /* MemoryMax in bytes; AGENT_MEMORY_MAX_NONE: no limit */
} agent_unit_props;

typedef struct agent_units_hooks {
    /* The connection to systemd came up (again: re-watch your units) or
     * went away (why says why; every operation in flight is lost). */
    void (*connected)(void *arg, bool up, const char *why);
    /* New values for some properties of a watched unit. */
    void (*props)(void *arg, const char *instance, const agent_unit_props *p);
    /* An operation ended: error_name NULL on success; else a D-Bus error
     * name (or "dpr.JobFailed" with the job result as message). */
    void (*done)(void *arg, const char *instance, agent_unit_op op, const char *error_name,
                 const char *error_message);
    void *arg;
} agent_units_hooks;

typedef struct agent_units agent_units;

/* Creates the module and starts connecting (never fails for bus reasons). */
int agent_units_new(uv_loop_t *loop, const agent_units_hooks *hooks, agent_units **out);
bool agent_units_connected(const agent_units *u);
/* Why it is not connected ("" when it is). */
const char *agent_units_error(const agent_units *u);
/* Reads the unit's properties now (reported through hooks->props) and
 * follows their changes. -ENOTCONN when not connected. */
int agent_units_watch(agent_units *u, const char *instance);
/* Starts an operation; its end is reported through hooks->done.
 * -ENOTCONN when not connected, -ENOMEM. */
int agent_units_request(agent_units *u, const char *instance, agent_unit_op op);
/* Sets the unit's MemoryMax (bytes; AGENT_MEMORY_MAX_NONE removes the limit)
 * with SetUnitProperties(runtime=true): systemd applies it to the unit's
 * cgroup at once (no restart, no daemon-reload) and keeps it in
 * /run/systemd/system.control until reboot. Ends through hooks->done with
 * AGENT_UNIT_SET_MEMORY_MAX. -ENOTCONN when not connected, -ENOMEM. */
int agent_units_set_memory_max(agent_units *u, const char *instance, uint64_t bytes);
const char *agent_unit_op_name(agent_unit_op op);
/* Closes the connection; handles close on the loop, then the memory goes. */
void agent_units_close(agent_units *u);

#endif
