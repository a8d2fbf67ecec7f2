/* rp_foreign.c - see rp_foreign.h. */
#include "rp_foreign.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/err.h"
#include "common/fs.h"
#include "common/log.h"
#include "kv_ckpt.h"
#include "kv_redis.h"
#include "rp_proxy.h"
#include "rp_redis.h"

#define IO_TIMEOUT_MS 600000 /* SAVE of a large data set */
#define PIPELINE 1024        /* SETs in flight */

int rp_foreign_scan(rp_foreign *f, uint64_t worker, uint64_t own_newest, dpr_err *err)
{
    uint8_t seed[16] = {0};
    kv_ckpt_meta m;
    int r;

    memset(f, 0, sizeof(*f));
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        log_warning("getrandom failed: the keyspace's hash seed is fixed");
    kv_dict_init(&f->dict, seed);
    r = kv_ckpt_remove_tmp(".");
    if (r == 0)
        r = kv_ckpt_list(".", &f->v, &f->n);
    if (r < 0)
        return dpr_err_set(err, r, "cannot list dpr-kv's checkpoints: %s", strerror(-r));
    if (f->n == 0)
        return 0;
    r = kv_chain_scan(".", worker, f->v, f->n, &f->files, err);
    if (r == 0)
        r = kv_chain_check(f->files, f->n, ".", err);
    if (r == 0 && f->v[f->n - 1] > own_newest) {
        r = kv_chain_restore(".", worker, f->files, f->n, f->n - 1, &f->dict, &m, err);
        f->built = r == 0;
    }
    if (r < 0) {
        dpr_err_prefix(err, "dpr-kv's checkpoints");
        return r == -ENOMEM || r == -EBADMSG ? r : -EIO;
    }
    log_info("found %zu checkpoint(s) of dpr-kv (newest %" PRIu64 ", world-line %" PRIu64
             "%s): the deployment switched from dpr-kv", f->n, f->v[f->n - 1],
             f->files[f->n - 1].world_line, f->built ? ", checked" : ", older than dpr-redis'");
    return 0;
}

ssize_t rp_foreign_at_or_below(const rp_foreign *f, uint64_t r)
{
    return f->n ? kv_chain_at_or_below(f->files, f->n, r) : -1;
}

/* Reads n replies; each must be +OK. */
static int expect_ok(redisContext *rc, size_t n, const char *what, dpr_err *err)
{
    for (size_t i = 0; i < n; i++) {
        redisReply *rep;
        int r = kv_redis_reply(rc, &rep, err);
        if (r < 0)
            return r;
        bool good = rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "OK") == 0;
        if (!good)
            r = dpr_err_set(err, rep->type == REDIS_REPLY_ERROR ? -EIO : -EPROTO,
                            "%s: redis-server answered %.200s", what,
                            rep->type == REDIS_REPLY_ERROR || rep->type == REDIS_REPLY_STATUS
                                ? rep->str : "an unexpected reply");
        freeReplyObject(rep);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Every key of d into redis-server, PIPELINE SETs at a time. */
static int write_keys(redisContext *rc, const kv_dict *d, dpr_err *err)
{
    size_t it[2] = {0, 0}, queued = 0;
    kv_entry *e = NULL;
    int r;

    while ((e = kv_dict_next(d, it, e))) {
        const char *argv[3] = {"SET", e->data, kv_entry_val(e)};
        size_t lens[3] = {3, e->klen, e->vlen};
        if (redisAppendCommandArgv(rc, 3, argv, lens) != REDIS_OK)
            return dpr_err_set(err, -ENOMEM, "out of memory");
        if (++queued == PIPELINE) {
            r = expect_ok(rc, queued, "SET", err);
            if (r < 0)
                return r;
            queued = 0;
        }
    }
    return expect_ok(rc, queued, "SET", err);
}

/* SAVE into a temporary file, renamed to the checkpoint's name. */
static int save_as(redisContext *rc, uint64_t version, uint64_t world_line, dpr_err *err)
{
    char tmp[96], name[96];
    const char *cfg[4] = {"CONFIG", "SET", "dbfilename", tmp};
    const char *save[1] = {"SAVE"};
    int r;

    snprintf(tmp, sizeof(tmp), "ckpt-%" PRIu64 ".%ld-foreign.tmp", version, (long)getpid());
    snprintf(name, sizeof(name), RP_CKPT_FMT, (unsigned long long)version,
             (unsigned long long)world_line);
    if (redisAppendCommandArgv(rc, 4, cfg, NULL) != REDIS_OK ||
        redisAppendCommandArgv(rc, 1, save, NULL) != REDIS_OK)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    r = expect_ok(rc, 2, "SAVE", err);
    if (r == 0 && rename(tmp, name) < 0)
        r = dpr_err_set(err, -errno, "cannot rename %s to %s: %s", tmp, name, strerror(errno));
    if (r == 0) {
        r = dpr_fsync_dir(".");
        if (r < 0)
            dpr_err_set(err, r, "cannot fsync the state directory: %s", strerror(-r));
    }
    if (r < 0)
        unlink(tmp);
    return r;
}

int rp_foreign_restore(rp_foreign *f, uint64_t worker, size_t idx, uint64_t *version,
                       uint64_t *world_line, dpr_err *err)
{
    redisContext *rc;
    kv_ckpt_meta m;
    int r;

    if (!f->built || idx != f->n - 1) {
        kv_dict_free(&f->dict);
        r = kv_chain_restore(".", worker, f->files, f->n, idx, &f->dict, &m, err);
        if (r < 0) {
            dpr_err_prefix(err, "dpr-kv's checkpoint %" PRIu64, f->v[idx]);
            return r;
        }
    }
    *version = f->files[idx].version;
    *world_line = f->files[idx].world_line;
    rc = kv_redis_connect(RP_REDIS_SOCKET, IO_TIMEOUT_MS, 16, err);
    if (!rc)
        return -ECONNREFUSED;
    r = write_keys(rc, &f->dict, err);
    if (r == 0)
        r = save_as(rc, *version, *world_line, err);
    kv_redis_close(rc);
    if (r < 0) {
        dpr_err_prefix(err, "cannot load dpr-kv's checkpoint %" PRIu64 " into redis-server",
                       *version);
        return r;
    }
    log_notice("restored dpr-kv's checkpoint %" PRIu64 " (world-line %" PRIu64 ", %zu keys), "
               "saved as dpr-redis' checkpoint %" PRIu64 ": the deployment switched from "
               "dpr-kv", *version, *world_line, kv_dict_size(&f->dict), *version);
    return 0;
}

int rp_foreign_remove(rp_foreign *f, dpr_err *err)
{
    int r;

    for (size_t i = 0; i < f->n; i++) {
        r = kv_ckpt_remove(".", f->v[i]);
        if (r < 0)
            return dpr_err_set(err, r, "cannot remove dpr-kv's checkpoint %" PRIu64 ": %s",
                               f->v[i], strerror(-r));
    }
    if (f->n == 0)
        return 0;
    log_info("removed %zu checkpoint(s) of dpr-kv", f->n);
    f->n = 0;
    r = dpr_fsync_dir(".");
    return r < 0 ? dpr_err_set(err, r, "cannot fsync the state directory: %s", strerror(-r)) : 0;
}

void rp_foreign_free(rp_foreign *f)
{
    kv_dict_free(&f->dict);
    free(f->v);
    free(f->files);
    f->v = NULL;
    f->files = NULL;
    f->n = 0;
}
