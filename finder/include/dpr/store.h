/*
 * store.h - where the finder's durable state lives.
 *
 * A small interface so that a replicated store (Raft, a later issue) can
 * replace the local file without touching the finder. The state is every
 * domain's (dpr/domains.h), saved and loaded together. save() returns only
 * when the state is durable; load() returns -ENOENT when there is no state
 * yet (a fresh finder) and -EBADMSG when the state is corrupt or unreadable:
 * the caller must stop then, never start over (that would lose committed
 * data). Other errors are negative errno values.
 */
#ifndef DPR_STORE_H
#define DPR_STORE_H

#include "dpr/err.h"
#include "dpr/domains.h"

typedef struct dpr_store dpr_store;

typedef struct dpr_store_ops {
    int (*load)(dpr_store *s, dpr_domains_state *out);
    int (*save)(dpr_store *s, const dpr_domains_state *st);
    void (*close)(dpr_store *s);
    /* Optional: a readable message about the last failed load or save
     * (naming the file and the problem), or NULL. */
    const char *(*error)(dpr_store *s);
} dpr_store_ops;

struct dpr_store {
    const dpr_store_ops *ops;
};

static inline int dpr_store_load(dpr_store *s, dpr_domains_state *out)
{
    return s->ops->load(s, out);
}
static inline int dpr_store_save(dpr_store *s, const dpr_domains_state *st)
{
    return s->ops->save(s, st);
}
/* Message about the last failed load/save; never NULL. */
static inline const char *dpr_store_error(dpr_store *s)
{
    const char *msg = s->ops->error ? s->ops->error(s) : NULL;
    return msg ? msg : "store error";
}
static inline void dpr_store_close(dpr_store *s)
{
    if (s)
        s->ops->close(s);
}

/*
 * File store in directory dir (created if missing, mode 0700): one file
 * `finder.state`, replaced atomically (dpr_replace_file: write
 * `finder.state.tmp`, fsync, rename, fsync the directory), with a magic, a
 * format byte and a CRC-32 over the content (format 3: one section per
 * domain; formats 1 and 2, from before domains, load as one domain named
 * DPR_DOMAIN_DEFAULT; docs/finder-store.md). The directory is locked
 * (dpr_lock_file on `finder.lock`): a second finder on the same directory
 * gets -EBUSY. err (may be NULL) says what failed, naming the path. The
 * store keeps a dpr_err of its own for its last failed load or save
 * (dpr_store_error).
 */
int dpr_store_file_open(const char *dir, dpr_store **out, dpr_err *err);

#endif
