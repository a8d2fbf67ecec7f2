/*
 * rp_keys.h - which arguments of a Redis command are keys (pure, no I/O).
 *
 * dpr-redis learns Redis' command table once, at start-up, from the
 * `COMMAND` reply of its redis-server child (rp_keys_load), and then finds
 * the keys of every command itself, with no round trip to Redis. It uses
 * Redis 7's key specifications, the same rules Redis Cluster uses
 * (src/db.c, getKeysUsingKeySpecs): a spec begins at an argument index or
 * after a keyword (searched forwards or backwards), and finds its keys as
 * a range (last key relative to the first or to the end, a step, a limit)
 * or by a count argument (EVAL, ZUNIONSTORE, LMPOP: `keynum`). The
 * legacy first-key/last-key/step triple cannot describe the commands whose
 * keys move (movablekeys); `COMMAND GETKEYS` can, but costs a round trip
 * per command, on the hot path. Specs flagged not_key (arguments that look
 * like keys but are not, e.g. SPUBLISH's channel) are skipped; a spec of
 * type "unknown" (SORT's BY, GET and STORE) marks the command `unknown`:
 * its keys cannot all be found. Commands with
 * subcommands (OBJECT ENCODING key, XINFO STREAM key) are looked up by
 * both words.
 *
 * Functions return 0 or a negative errno; errors carry a message in *err.
 */
#ifndef RP_KEYS_H
#define RP_KEYS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "dpr/err.h"
#include "kv_resp.h"

#define RP_KEYS_NAME_MAX 64

typedef struct rp_keyspec {
    bool keyword; /* begin_search: after `word` (else at index `index`) */
    int index;    /* index, or keyword's startfrom (negative: from the end, backwards) */
    char *word;
    bool keynum;    /* find_keys: by a count argument (else a range) */
    int a, b, step; /* range: lastkey, limit; keynum: keynumidx, firstkey */
} rp_keyspec;

typedef struct rp_cmdinfo {
    char name[RP_KEYS_NAME_MAX]; /* lower case; "object|encoding" for a subcommand */
    int arity;
    bool write;    /* Redis' "write" flag */
    bool may_write; /* it can change the data: not "readonly", and "write",
                     * "may_replicate" (PUBLISH, SCRIPT FLUSH) or keys (EVAL) */
    bool has_subs; /* a container: look up its subcommand */
    bool unknown;  /* a spec Redis cannot describe ("unknown": SORT's BY, GET, STORE) */
    rp_keyspec *specs;
    size_t nspecs;
} rp_cmdinfo;

typedef struct rp_keys {
    rp_cmdinfo *cmds; /* open addressing by name; name[0] == '\0': free */
    size_t cap, n;
} rp_keys;

/* Fills t (emptied first) from the reply to COMMAND. -EPROTO with a message
 * for a reply of another shape; -ENOMEM. t is freed on failure. */
int rp_keys_load(rp_keys *t, const redisReply *reply, dpr_err *err);
void rp_keys_free(rp_keys *t);

/* The command argv names (its subcommand's entry when it has one), or NULL
 * when Redis does not know it. */
const rp_cmdinfo *rp_keys_lookup(const rp_keys *t, size_t argc, const kv_arg *argv);

/*
 * Calls owned(ud, key, len) for every key of argv (of command ci) in order
 * and returns the index of the first one it says false for, or -1 when it
 * said true for all (or there are none). Indices outside argv (a wrong
 * argument count, which Redis then refuses) are skipped.
 */
ssize_t rp_keys_first_foreign(const rp_cmdinfo *ci, size_t argc, const kv_arg *argv,
                              bool (*owned)(void *ud, const char *key, size_t n), void *ud);

#endif
