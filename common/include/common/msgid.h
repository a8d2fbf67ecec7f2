/*
 * common/msgid.h - the journal MESSAGE_IDs of DPR events, defined once.
 *
 * An entry that marks an event an operator or a program looks for (a state
 * change, not a routine message) carries a fixed 128-bit MESSAGE_ID, so it
 * can be found without matching text:
 *
 *     journalctl MESSAGE_ID=48b4bcb35d2e4862b6f23d106e4b83fc
 *
 * Each id was generated once with `systemd-id128 new` and never changes.
 * The macros are the 32 hex digits; DPR_MSGID_FIELD makes the journal field:
 *
 *     const char *fields[] = {DPR_MSGID_FIELD(DPR_MSGID_CHECKPOINT_FAILING), NULL};
 *     dpr_log_fields(DPR_LOG_ERR, fields, "checkpoints failing: %s", why);
 *
 * Logged on each transition (not on every retry). docs/dpr-kv.md and
 * docs/operations.md list them; conf/dpr-cluster.catalog explains each to
 * `journalctl -x` (installed in the journal's message catalog by make
 * install and the package): an id added here gets its entry there.
 */
#ifndef COMMON_MSGID_H
#define COMMON_MSGID_H

/* dpr-kv cannot write checkpoints: writes are refused from now on */
#define DPR_MSGID_CHECKPOINT_FAILING "48b4bcb35d2e4862b6f23d106e4b83fc"
/* dpr-kv wrote a checkpoint again after failures: writes are accepted again */
#define DPR_MSGID_CHECKPOINT_RECOVERED "e7dc354f1ceb4e37b8e313d81389e442"
/* the finder does not know this worker (its state was lost?): commits stopped */
#define DPR_MSGID_FINDER_LOST_WORKER "c9f40c3028844b989e8f93ddb55dfafd"
/* a cache-store cannot recover its data at start-up and exits */
#define DPR_MSGID_RECOVERY_FAILED "1610ba77015a419083a62876c4e1130b"
/* the finder fenced this cache-store: its worker was moved to another node
 * (another incarnation holds the worker's token); it exits for good */
#define DPR_MSGID_FENCED "480f90f231d5422ca59f38a0d3f162a7"

/* dpr-agent: an instance became unhealthy (refusing writes, finder lost
 * its worker); DPR_INSTANCE= names it */
#define DPR_MSGID_INSTANCE_UNHEALTHY "e050e272266247e4a1dc4ff09a4f25ba"
/* dpr-agent: an instance failed (its unit failed, or it exits because it
 * cannot go on, e.g. cannot recover its data) */
#define DPR_MSGID_INSTANCE_FAILED "d0be24b316d348e6b176f55f51bc0935"
/* dpr-agent: an unhealthy or failed instance is ok again */
#define DPR_MSGID_INSTANCE_HEALTHY "745bccebb9b14411bd43b4c053ff39e0"
/* dpr-agent: the hosted finder does not know workers whose versions it had
 * committed: its state was lost or replaced */
#define DPR_MSGID_FINDER_STATE_LOST "0ec2aec8335241b38901ac3574ae27cd"
/* dpr-agent (the finder's host): a DPR domain moved to a new world-line: its
 * workers rolled back to its cut (a cache-store crashed or lost its data);
 * DPR_DOMAIN=, DPR_WORLD_LINE=, DPR_OLD_WORLD_LINE= */
#define DPR_MSGID_ROLLBACK "892d967b7a6c449397bf100928d6aff0"
/* dpr-agent: a deployment's roll-out halted (an updated instance did not
 * become ready): no further instance is updated; DPR_DEPLOYMENT= */
#define DPR_MSGID_ROLLOUT_HALTED "0a9e477766c2498094b121bf8cc7a709"
/* dpr-agent: a halted roll-out resumed */
#define DPR_MSGID_ROLLOUT_RESUMED "36022261c96b4224854fea3768873721"
/* dpr-agent (the Raft leader): a node of the cluster is down (no contact
 * for raft.node_down_after_ms); DPR_NODE= */
#define DPR_MSGID_NODE_DOWN "acfd3c4809f34b99b41af34dee3615e1"
/* dpr-agent (the Raft leader): a node that was down is back; DPR_NODE= */
#define DPR_MSGID_NODE_UP "beb1597e5f6141e0844c2ddb007e00d7"

#define DPR_MSGID_FIELD(id) "MESSAGE_ID=" id

#endif
