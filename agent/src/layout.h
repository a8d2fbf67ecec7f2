/*
 * layout.h - gives each deployment's shards their layout, and drives
 * resizes (docs/operations.md, "Resizing a deployment").
 *
 * A deployment's layout record (state.h, agent_layout) says which layout
 * its shards have and whether a resize is in progress. On the agent's loop,
 * every LAYOUT_TICK_MS, this module asks the shards of every deployment
 * that needs something for their state (INFO dpr, one RESP connection
 * per instance, respconn.h) and sends what the next step needs:
 *
 *   - a deployment without a layout (new, or from before layouts): once
 *     every shard answers, DPR.LAYOUT SET epoch 1 on each;
 *   - a resize: DPR.LAYOUT PREPARE on every old and new shard; once every
 *     shard's state is in the cut, MIGRATE on the shards that give keys up;
 *     once the copies are in the cut with no rollback in between, COMMIT
 *     on every shard (docs/dpr-kv.md, "Layouts and resizing").
 *
 * Only the layout records are durable (agent.json); after a restart the
 * step is worked out again from what the shards say, every command being
 * safe to repeat. When the resize is done the record is updated and saved,
 * and the shards it removed retire.
 */
#ifndef AGENT_LAYOUT_H
#define AGENT_LAYOUT_H

#include <jansson.h>
#include <stdbool.h>
#include <uv.h>

typedef struct agent agent;
typedef struct agent_layouts agent_layouts;

#define LAYOUT_TICK_MS 100

/* Starts the driver on the agent's loop. -ENOMEM. */
int agent_layouts_start(agent *a, agent_layouts **out);
/* Closes connections and the timer (handles close on the loop). */
void agent_layouts_stop(agent_layouts *l);
/* After the loop ran the close callbacks. NULL is fine. */
void agent_layouts_free(agent_layouts *l);

/* What status shows of deployment's layout: {"epoch", "shards", "resize":
 * null or {"from", "to", "epoch", "step", "moved_keys", "seconds",
 * "error"}}. */
json_t *agent_layouts_status(agent_layouts *l, const char *deployment);

#endif
