/* kv_migrate.c - see kv_migrate.h. */
#include "kv_migrate.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/log.h"
#include "kv_peer.h"

void kv_migrate_init(kv_migrate *m)
{
    memset(m, 0, sizeof(*m));
    m->pid = -1;
}

void kv_migrate_kill(kv_migrate *m)
{
    if (m->state != KV_MIGRATE_RUNNING)
        return;
    kill(m->pid, SIGKILL);
    while (waitpid(m->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    m->state = KV_MIGRATE_FAILED;
    m->pid = -1;
    m->end_ms = dpr_mono_ms();
    dpr_err_set(&m->error, -ECANCELED, "stopped: the layout changed");
}

void kv_migrate_free(kv_migrate *m)
{
    kv_migrate_kill(m);
    if (m->shared)
        munmap(m->shared, sizeof(*m->shared));
    m->shared = NULL;
}

/* ---- the child --------------------------------------------------------------- */

/* One target shard: its connection and the command being filled. */
typedef struct target {
    kv_peer peer;
    bool connected;    /* peer was connected (close it) */
    const char **argv;
    size_t *argvlen;
    size_t argc;       /* 2 + 2 * pairs */
    size_t bytes;
    size_t pairs;
    unsigned inflight; /* commands sent, not answered */
    uint64_t inflight_keys[KV_MIGRATE_PIPELINE + 1], inflight_bytes[KV_MIGRATE_PIPELINE + 1];
    unsigned head;     /* ring of the counts above */
} target;

typedef struct child {
    const kv_layout *to;
    dpr_tls_ctx *tls;  /* NULL: plain */
    target *t;
    char epoch[24];
    kv_migrate_shared *out;
} child;

static int connect_target(child *c, uint32_t i)
{
    dpr_err why = DPR_ERR_INIT;
    int rc;

    c->t[i].connected = true;
    rc = kv_peer_connect(&c->t[i].peer, c->to->addrs[i], c->tls, KV_MIGRATE_TIMEOUT_MS, &why);
    if (rc < 0)
        return dpr_err_set(&c->out->error, rc, "shard %" PRIu32 ": %s", i, why.msg);
    return 0;
}

/* Reads the answer to the oldest command sent to target i. */
static int read_one(child *c, uint32_t i)
{
    target *t = &c->t[i];
    redisReply *r = NULL;
    dpr_err why = DPR_ERR_INIT;
    int rc = 0;

    if ((rc = kv_peer_reply(&t->peer, &r, &why)) < 0) {
        dpr_err_set(&c->out->error, rc, "shard %" PRIu32 ": %s", i, why.msg);
        goto out;
    }
    if (r->type != REDIS_REPLY_INTEGER) {
        rc = dpr_err_set(&c->out->error, -EREMOTEIO, "shard %" PRIu32 " (%s) refused "
                         "DPR.IMPORT: %.*s", i, c->to->addrs[i],
                         r->type == REDIS_REPLY_ERROR ? (int)r->len : 20,
                         r->type == REDIS_REPLY_ERROR ? r->str : "an answer of the wrong type");
        goto out;
    }
    c->out->keys += t->inflight_keys[t->head];
    c->out->bytes += t->inflight_bytes[t->head];
    t->head = (t->head + 1) % (KV_MIGRATE_PIPELINE + 1);
    t->inflight--;
out:
    if (r)
        freeReplyObject(r);
    return rc;
}

/* Sends target i's command (if it has pairs) and keeps the pipeline bounded. */
static int flush_target(child *c, uint32_t i, unsigned max_inflight)
{
    target *t = &c->t[i];
    int rc;

    if (t->pairs) {
        unsigned slot = (t->head + t->inflight) % (KV_MIGRATE_PIPELINE + 1);
        dpr_err why = DPR_ERR_INIT;
        if (!t->connected && (rc = connect_target(c, i)) < 0)
            return rc;
        if ((rc = kv_peer_send(&t->peer, (int)t->argc, t->argv, t->argvlen, &why)) < 0)
            return dpr_err_set(&c->out->error, rc, "shard %" PRIu32 ": %s", i, why.msg);
        t->inflight_keys[slot] = t->pairs;
        t->inflight_bytes[slot] = t->bytes;
        t->inflight++;
        t->argc = 2;
        t->pairs = t->bytes = 0;
    }
    while (t->inflight > max_inflight)
        if ((rc = read_one(c, i)) < 0)
            return rc;
    return 0;
}

static int child_run(child *c, const kv_dict *d)
{
    size_t it[2] = {0, 0};
    kv_entry *e = NULL;
    uint32_t n = c->to->nshards;
    int rc = 0;

    c->t = calloc(n, sizeof(*c->t));
    if (!c->t)
        return dpr_err_set(&c->out->error, -ENOMEM, "out of memory");
    snprintf(c->epoch, sizeof(c->epoch), "%" PRIu64, c->to->epoch);
    while ((e = kv_dict_next(d, it, e))) {
        uint32_t owner = kv_layout_owner(c->to, e->data, e->klen);
        target *t = &c->t[owner];
        if (owner == c->to->shard)
            continue; /* stays */
        if (!t->argv) {
            t->argv = malloc((2 + 2 * KV_MIGRATE_BATCH_KEYS) * sizeof(*t->argv));
            t->argvlen = malloc((2 + 2 * KV_MIGRATE_BATCH_KEYS) * sizeof(*t->argvlen));
            if (!t->argv || !t->argvlen)
                return dpr_err_set(&c->out->error, -ENOMEM, "out of memory");
            t->argv[0] = "DPR.IMPORT";
            t->argvlen[0] = strlen("DPR.IMPORT");
            t->argv[1] = c->epoch;
            t->argvlen[1] = strlen(c->epoch);
            t->argc = 2;
        }
        t->argv[t->argc] = e->data;
        t->argvlen[t->argc++] = e->klen;
        t->argv[t->argc] = kv_entry_val(e);
        t->argvlen[t->argc++] = e->vlen;
        t->pairs++;
        t->bytes += (size_t)e->klen + e->vlen;
        if (t->pairs == KV_MIGRATE_BATCH_KEYS || t->bytes >= KV_MIGRATE_BATCH_BYTES)
            if ((rc = flush_target(c, owner, KV_MIGRATE_PIPELINE)) < 0)
                return rc;
    }
    for (uint32_t i = 0; i < n; i++)
        if (c->t[i].argv && (rc = flush_target(c, i, 0)) < 0)
            return rc;
    return 0;
}

static void child_main(const kv_dict *d, const kv_layout *to, dpr_tls_ctx *tls,
                       kv_migrate_shared *out, pid_t parent)
{
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2};
    struct sigaction sa;
    sigset_t none;
    child c = {.to = to, .tls = tls, .out = out};

    /* the parent's libuv handlers would write into its signal pipe */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        sigaction(sigs[i], &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL); /* a target that goes away is an error, not a death */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(3);
    /* the process exits right after: the connections and buffers go with it */
    _exit(child_run(&c, d) == 0 ? 0 : 1);
}

/* ---- the parent -------------------------------------------------------------- */

int kv_migrate_start(kv_migrate *m, const kv_dict *d, const kv_layout *pending,
                     dpr_tls_ctx *tls, dpr_err *err)
{
    pid_t parent = getpid(), pid;

    if (m->state == KV_MIGRATE_RUNNING)
        return dpr_err_set(err, -EBUSY, "a migration is running");
    if (!m->shared) {
        void *p = mmap(NULL, sizeof(*m->shared), PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return dpr_err_set(err, -errno, "mmap: %s", strerror(errno));
        m->shared = p;
    }
    memset(m->shared, 0, sizeof(*m->shared));
    pid = fork();
    if (pid < 0)
        return dpr_err_set(err, -errno, "fork: %s", strerror(errno));
    if (pid == 0)
        child_main(d, pending, tls, m->shared, parent);
    m->state = KV_MIGRATE_RUNNING;
    m->epoch = pending->epoch;
    m->pid = pid;
    m->keys = m->bytes = 0;
    memset(&m->error, 0, sizeof(m->error));
    m->start_ms = dpr_mono_ms();
    m->end_ms = 0;
    return 0;
}

bool kv_migrate_reap(kv_migrate *m)
{
    int status;
    pid_t r;

    if (m->state != KV_MIGRATE_RUNNING)
        return false;
    while ((r = waitpid(m->pid, &status, WNOHANG)) < 0 && errno == EINTR)
        ;
    if (r == 0)
        return false;
    m->pid = -1;
    m->end_ms = dpr_mono_ms();
    m->keys = m->shared->keys;
    m->bytes = m->shared->bytes;
    if (r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        m->state = KV_MIGRATE_DONE;
    } else {
        m->state = KV_MIGRATE_FAILED;
        if (m->shared->error.msg[0])
            m->error = m->shared->error;
        else if (r > 0 && WIFSIGNALED(status))
            dpr_err_set(&m->error, -EINTR, "the migration process was killed by signal %d",
                        WTERMSIG(status));
        else
            dpr_err_set(&m->error, -EIO, "the migration process failed");
    }
    return true;
}
