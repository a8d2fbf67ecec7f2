/*
 * discovery.h - DNS-SD through avahi-daemon (avahi-client on the agent's
 * loop, uvavahi.h): publishes the services the agent asks for, and
 * browses for the agents of its cluster.
 *
 * Robust to what happens to avahi: absent or not running at start (the
 * agent works; status says discovery is off and why, and it connects when
 * the daemon appears), a daemon restart (the client reconnects and
 * publishes everything again), a name taken by another host (the service
 * is renamed, "name #2", as avahi proposes).
 *
 * Each service is an entry group of its own, so a change touches only
 * its service: a new TXT is updated in place; another port is withdrawn
 * and published again; a service no longer asked for is withdrawn.
 *
 * Loop thread only.
 */
#ifndef AGENT_DISCOVERY_H
#define AGENT_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "dnssd.h"

typedef struct agent_discovery agent_discovery;

typedef struct agent_discovery_hooks {
    /* The agents of the cluster found by browsing changed. */
    void (*peers)(void *arg);
    /* The state (agent_discovery_state) changed. */
    void (*state)(void *arg);
    void *arg;
} agent_discovery_hooks;

typedef struct agent_discovery_config {
    const char *cluster;
    bool browse_agents;        /* browse _dpr-agent._tcp for this cluster's agents */
} agent_discovery_config;

/* Starts (never fails because avahi is missing: see the state). 0 or
 * -ENOMEM. */
int agent_discovery_start(uv_loop_t *loop, const agent_discovery_config *cfg,
                          const agent_discovery_hooks *hooks, agent_discovery **out);
/* Withdraws everything and frees d once the loop closed its handles.
 * NULL: nothing. */
void agent_discovery_stop(agent_discovery *d);

/* The services to publish from now on (copied): changes are applied at
 * once when avahi runs, else once it does. -ENOMEM (nothing changed). */
int agent_discovery_publish(agent_discovery *d, const agent_dnssd_service *s, size_t n);

typedef enum agent_discovery_state_t {
    AGENT_DISCOVERY_OFF,        /* not connected: the reason says why */
    AGENT_DISCOVERY_CONNECTING, /* waiting for avahi-daemon */
    AGENT_DISCOVERY_ON,
} agent_discovery_state_t;

/* The state and a reason ("avahi-daemon is not running", "host name
 * conflict", "" when on). */
agent_discovery_state_t agent_discovery_state(const agent_discovery *d, const char **reason);
const char *agent_discovery_state_name(agent_discovery_state_t s);
/* How many services are published now (established with avahi). */
size_t agent_discovery_published(const agent_discovery *d);
/* A published service's name as avahi has it (renamed after a conflict),
 * by type and the name asked for; NULL when not published. */
const char *agent_discovery_name(const agent_discovery *d, const char *type,
                                 const char *asked);

/* The agents of the cluster found (records with a Raft address; this
 * node's own among them). */
size_t agent_discovery_peers(const agent_discovery *d, const agent_dnssd_peer **out);

#endif
