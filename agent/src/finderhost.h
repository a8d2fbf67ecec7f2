/*
 * finderhost.h - the DPR finder hosted by the agent (single node): the
 * finder core with its file store under <state>/finder, served over RESP
 * on the agent's loop (finder/src/server.c), and the address cache-stores
 * are told to reach it on.
 */
#ifndef AGENT_FINDERHOST_H
#define AGENT_FINDERHOST_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dpr/err.h"
#include "dpr/finder.h"

typedef struct agent_finder agent_finder;

typedef struct agent_finder_hooks {
    void (*committed)(void *arg);          /* a new durable state was published */
    void (*failed)(void *arg, int err);    /* saving failed: the finder stopped */
    void *arg;
} agent_finder_hooks;

/*
 * Loads (or creates) the finder state in dir and listens on listen
 * ("HOST:PORT"). A wildcard listen host (*, 0.0.0.0, ::) means
 * advertise_host (node.address): the finder listens there only, and that
 * name is the address given to cache-stores; the address bound is logged.
 * A damaged state is an error (-EBADMSG), never a fresh start. 0 or a
 * negative errno with a message in err.
 */
int agent_finder_open(uv_loop_t *loop, const char *dir, const char *listen,
                      const char *advertise_host, const agent_finder_hooks *hooks,
                      agent_finder **out, dpr_err *err);
/* "HOST:PORT" for cache-stores (the real port when listen asked for 0). */
const char *agent_finder_address(const agent_finder *af);
dpr_finder *agent_finder_core(agent_finder *af);
/* Forgets worker (retired instance), presenting its token (NULL: none):
 * 0, or -EBUSY while one of its reported checkpoints is not in the cut yet
 * (try again after a commit), -ENOENT when the finder does not know it
 * (also success for the caller), -EACCES when the finder holds another
 * token for it (someone else registered that id). */
int agent_finder_remove_worker(agent_finder *af, uint64_t worker, const char *token);
/* Graceful stop (handles close on the loop); then agent_finder_free. */
void agent_finder_stop(agent_finder *af);
void agent_finder_free(agent_finder *af);

#endif
