/* raftstore.c - the finder's store in the Raft log (see raftstore.h). */
#include "raftstore.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/buf.h"
#include "common/err.h"

typedef struct raft_store {
    dpr_store base;
    agent_raft *raft;
    dpr_buf image;
    dpr_err err;
    size_t inflight;
    bool closed;
} raft_store;

typedef struct save_req {
    raft_store *rs;
    dpr_store_done_fn done;
    void *arg;
} save_req;

static int rs_load(dpr_store *s, dpr_domains_state *out)
{
    raft_store *rs = (raft_store *)s;
    const agent_cstate *cs = agent_raft_cstate(rs->raft);

    if (!cs->finder)
        return dpr_err_set(&rs->err, -ENOENT, "no finder state in the raft log yet");
    return dpr_store_image_decode(cs->finder, cs->finder_len, "raft log", out, &rs->err);
}

static void rs_free(raft_store *rs)
{
    dpr_buf_free(&rs->image);
    free(rs);
}

static void on_done(void *arg, int status)
{
    save_req *q = arg;
    raft_store *rs = q->rs;

    rs->inflight--;
    if (!rs->closed) {
        if (status < 0 && status != -ENOTCONN)
            dpr_err_set(&rs->err, status, "the raft log did not take the finder state: %s",
                        strerror(-status));
        q->done(q->arg, status);
    } else if (rs->inflight == 0) {
        rs_free(rs);
    }
    free(q);
}

static int rs_save_async(dpr_store *s, const dpr_domains_state *st, dpr_store_done_fn done,
                         void *arg)
{
    raft_store *rs = (raft_store *)s;
    save_req *q;
    int rc;

    if (st) {
        rc = dpr_store_image_encode(st, &rs->image, &rs->err);
        if (rc < 0)
            return rc;
    }
    q = malloc(sizeof(*q));
    if (!q)
        return dpr_err_set(&rs->err, -ENOMEM, "out of memory");
    *q = (save_req){ rs, done, arg };
    if (st)
        rc = agent_raft_apply(rs->raft, AGENT_CSTATE_ENTRY_FINDER, rs->image.data, rs->image.len,
                              on_done, q);
    else
        rc = agent_raft_barrier(rs->raft, on_done, q);
    if (rc < 0) {
        free(q);
        return dpr_err_set(&rs->err, rc, "%s", rc == -ENOTCONN ? "this node is not the raft "
                           "leader" : strerror(-rc));
    }
    rs->inflight++;
    return 0;
}

static const char *rs_error(dpr_store *s)
{
    raft_store *rs = (raft_store *)s;

    return rs->err.msg[0] ? rs->err.msg : NULL;
}

static void rs_close(dpr_store *s)
{
    raft_store *rs = (raft_store *)s;

    rs->closed = true;
    if (rs->inflight == 0)
        rs_free(rs);
}

static const dpr_store_ops raft_ops = {
    .load = rs_load,
    .close = rs_close,
    .error = rs_error,
    .save_async = rs_save_async,
};

int agent_raftstore_open(agent_raft *raft, dpr_store **out)
{
    raft_store *rs = calloc(1, sizeof(*rs));

    *out = NULL;
    if (!rs)
        return -ENOMEM;
    rs->base.ops = &raft_ops;
    rs->raft = raft;
    dpr_buf_init(&rs->image);
    *out = &rs->base;
    return 0;
}
