/*
 * store.h - where the finder's durable state lives.
 *
 * A small interface so that a replicated store (the agents' Raft log,
 * agent/src/raftstore.c) can replace the local file without touching the
 * finder. The state is every domain's (dpr/domains.h), saved and loaded
 * together. save() returns only when the state is durable; load() returns
 * -ENOENT when there is no state yet (a fresh finder) and -EBADMSG when the
 * state is corrupt or unreadable: the caller must stop then, never start
 * over (that would lose committed data). Other errors are negative errno
 * values.
 *
 * A store may save asynchronously instead (save_async): the server then
 * holds the replies of one loop turn until their state is durable
 * (finder_server.h).
 */
#ifndef DPR_STORE_H
#define DPR_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "dpr/err.h"
#include "dpr/domains.h"

typedef struct dpr_store dpr_store;

/* The end of an asynchronous save or confirmation (on the store's loop):
 * 0, or a negative errno: -ENOTCONN when this node no longer holds the
 * replicated state (it lost its leadership: nothing computed from the
 * state may be answered), other errors when the state is not durable. */
typedef void (*dpr_store_done_fn)(void *arg, int status);

typedef struct dpr_store_ops {
    int (*load)(dpr_store *s, dpr_domains_state *out);
    int (*save)(dpr_store *s, const dpr_domains_state *st);
    void (*close)(dpr_store *s);
    /* Optional: a readable message about the last failed load or save
     * (naming the file and the problem), or NULL. */
    const char *(*error)(dpr_store *s);
    /* Optional (a replicated store). Starts making st durable (st is
     * copied before the call returns) and calls done once, later, never
     * from inside the call. st NULL asks for a confirmation instead: that
     * the state last saved is still the store's current one (a replicated
     * store: this node still leads a quorum), so that replies computed
     * from it may go out. 0 when started, else a negative errno (done is
     * never called then). A store with save_async may leave save NULL. */
    int (*save_async)(dpr_store *s, const dpr_domains_state *st, dpr_store_done_fn done,
                      void *arg);
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
static inline bool dpr_store_is_async(const dpr_store *s)
{
    return s->ops->save_async != NULL;
}
static inline int dpr_store_save_async(dpr_store *s, const dpr_domains_state *st,
                                       dpr_store_done_fn done, void *arg)
{
    return s->ops->save_async(s, st, done, arg);
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

/* ---- the state's byte image (store_image.c; docs/finder-store.md) -------- */

/* Far above any real cluster (65,536 workers take 1.5 MiB). */
#define DPR_STORE_IMAGE_MAX ((size_t)1 << 30)

/*
 * The image of st (format 3, with its CRC) into out, replacing what out
 * held: 0, -EINVAL for an inconsistent state (the reason in err), -EFBIG
 * beyond DPR_STORE_IMAGE_MAX, -ENOMEM.
 */
int dpr_store_image_encode(const dpr_domains_state *st, dpr_buf *out, dpr_err *err);
/*
 * Reads and checks an image of any format (1 to 3): 0 and *out filled
 * (free with dpr_domains_state_free), -EBADMSG for a damaged or invalid
 * image (err says what, starting with `what`: a file name or "raft entry"),
 * -ENOMEM.
 */
int dpr_store_image_decode(const void *image, size_t len, const char *what,
                           dpr_domains_state *out, dpr_err *err);

#endif
