/*
 * statefile.h - the agent's state file (<state>/agent.json): the recorded
 * desired state and allocations, replaced atomically (temporary file,
 * fsync, rename, fsync of the directory). A damaged file is an error with a
 * message that says where, never a silent reset: starting over would hand
 * out worker ids and ports again and orphan running instances.
 */
#ifndef AGENT_STATEFILE_H
#define AGENT_STATEFILE_H

#include <jansson.h>
#include <stddef.h>

#include "dpr/err.h"
#include "state.h"

#define AGENT_STATE_FILE "agent.json"
#define AGENT_STATE_FORMAT 1

/*
 * Loads path. 0; 1 when instances recorded without a finder token (by an
 * agent from before tokens) were given new ones: save the state before the
 * tokens are used (written to instance files), or a restart would make
 * others; -ENOENT when there is no file (a fresh agent); -EBADMSG when it is
 * damaged or inconsistent; another negative errno when it cannot be read.
 * err gets a readable message (naming the file) on failure.
 */
int agent_statefile_load(const char *path, agent_state *out, dpr_err *err);
/* Writes st durably to path (dpr_replace_file). 0 or a negative errno with
 * a message in err. */
int agent_statefile_save(const char *path, const agent_state *st, dpr_err *err);

/* From the JSON form (-EBADMSG with a message for bad content); 0, or 1 as
 * agent_statefile_load. */
int agent_state_from_json(const json_t *j, agent_state *out, dpr_err *err);

/*
 * Takes an exclusive lock on dir/agent.lock (created if missing;
 * dpr_lock_file) and keeps it in *fd (close it to release). -EBUSY when
 * another agent holds it.
 */
int agent_statefile_lock(const char *dir, int *fd, dpr_err *err);

#endif
