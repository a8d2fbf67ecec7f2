/*
 * agent.h - dpr-agent's core: the recorded state, the control API's
 * operations, the hosted finder and the convergence of cache-store units.
 * main.c owns the process (arguments, signals, sd_notify, watchdog).
 */
#ifndef AGENT_AGENT_H
#define AGENT_AGENT_H

#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "dpr/err.h"

typedef struct agent agent;

typedef struct agent_hooks {
    /* The agent cannot go on (the finder could not save its state). */
    void (*fatal)(void *arg, const char *why);
    /* Something an operator would want in STATUS= changed. */
    void (*status)(void *arg, const char *text);
    void *arg;
} agent_hooks;

/*
 * Locks and loads the state directory, opens the finder, writes instance
 * files, binds the control socket and starts connecting to systemd. On
 * success the agent is ready to serve (READY=1). cfg must outlive it; the
 * agent updates its node.address when that names an interface (nodenet.c).
 * A negative errno with a message in err; *out is then set only if the
 * agent has handles closing on the loop (call agent_free after running it).
 */
int agent_start(uv_loop_t *loop, agent_config *cfg, const agent_hooks *hooks,
                agent **out, dpr_err *err);
/* Stops serving: closes the control socket and the systemd connection,
 * stops the finder gracefully. Cache-store units keep running. */
void agent_stop(agent *a);
/* After the loop has run every close callback. */
void agent_free(agent *a);
/* SIGHUP: reads the tls files again for new connections between agents
 * (open ones keep theirs); a reload that fails keeps the last good
 * certificates. Logs what it did. */
void agent_reload_tls(agent *a);

#endif
