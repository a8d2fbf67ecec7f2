/*
 * uvavahi.h - avahi's main loop interface (AvahiPoll) on a libuv loop, so
 * that avahi-client runs on the agent's loop thread like everything else.
 *
 * avahi-client speaks D-Bus, and D-Bus may watch one file descriptor twice
 * (once to read, once to write); libuv allows one poll handle per
 * descriptor, so the watches of one descriptor share a handle polling for
 * the union of their events.
 *
 * Loop thread only.
 */
#ifndef AGENT_UVAVAHI_H
#define AGENT_UVAVAHI_H

#include <avahi-common/watch.h>
#include <uv.h>

typedef struct agent_uvavahi agent_uvavahi;

/* 0 or -ENOMEM. */
int agent_uvavahi_new(uv_loop_t *loop, agent_uvavahi **out);
/* What avahi_client_new takes; valid until agent_uvavahi_free. */
const AvahiPoll *agent_uvavahi_poll(agent_uvavahi *p);
/* Frees p once every watch and timeout avahi made is freed (free the
 * client first); handles still closing go with the loop's next turn.
 * NULL: nothing. */
void agent_uvavahi_free(agent_uvavahi *p);

#endif
