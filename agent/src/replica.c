/* replica.c - see replica.h. */
#include "replica.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <grp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent_int.h"
#include "clusterspec.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/num.h"
#include "replclient.h"
#include "replserver.h"
#include "replstore.h"

/* How long one copy to one node may take. */
#define SHIP_TIMEOUT_MS 30000

/* What status shows of one local instance. */
typedef struct inst_note {
    char name[AGENT_INSTANCE_NAME_MAX + 1];
    uint64_t worker;
    uint64_t replicated;   /* newest version on every replica node (0: none yet) */
    char error[400];       /* the last failure, "" after a success */
} inst_note;

struct ship;

/* One copy of a ship: to one replica node. */
typedef struct copy {
    struct ship *s;
    agent_replclient *q; /* NULL once it ended */
    char node[AGENT_LABEL_MAX + 1];
} copy;

/* One DPR.REPLICA.SHIP: its copies to each replica node. */
typedef struct ship {
    struct ship *next;
    agent_replica *r;
    agent_replserver_call *call;
    char instance[AGENT_INSTANCE_NAME_MAX + 1];
    uint64_t worker, version;
    unsigned pending;     /* copies not ended, + 1 while they start */
    copy c[AGENT_REPLICAS_MAX];
    int status;
    char error[400];
} ship;

struct agent_replica {
    agent *a;
    agent_replserver *srv;
    char root[4096];
    ship *ships;
    inst_note *notes;
    size_t nnotes;
};

static inst_note *note_of(agent_replica *r, const char *name, uint64_t worker)
{
    inst_note *v;

    for (size_t i = 0; i < r->nnotes; i++)
        if (strcmp(r->notes[i].name, name) == 0 && r->notes[i].worker == worker)
            return &r->notes[i];
    v = realloc(r->notes, (r->nnotes + 1) * sizeof(*v));
    if (!v)
        return NULL;
    r->notes = v;
    v = &r->notes[r->nnotes++];
    memset(v, 0, sizeof(*v));
    snprintf(v->name, sizeof(v->name), "%s", name);
    v->worker = worker;
    return v;
}

/* The slot of a local instance in the placement this node took, or NULL. */
static const agent_slot *slot_of(agent *a, const agent_instance *in)
{
    const agent_placed_dep *d = agent_placement_find(&a->placement, in->deployment);

    if (!d || in->shard >= d->shards || d->slot[in->shard].worker != in->worker)
        return NULL;
    return &d->slot[in->shard];
}

/* ---- shipping ------------------------------------------------------------------------- */

static void unlink_ship(agent_replica *r, ship *s)
{
    for (ship **pp = &r->ships; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            return;
        }
}

static void ship_end(ship *s)
{
    agent_replica *r = s->r;
    inst_note *n = note_of(r, s->instance, s->worker);

    if (n && s->status == 0) {
        /* (the last failure is over: error is "" after any success) */
        if (s->version > n->replicated)
            n->replicated = s->version;
        n->error[0] = '\0';
    } else if (n && s->status < 0) {
        if (strcmp(n->error, s->error) != 0)
            log_warning("%s: checkpoint %" PRIu64 " is not copied: %s (it is not reported "
                        "durable until it is)", s->instance, s->version, s->error);
        snprintf(n->error, sizeof(n->error), "%s", s->error);
    }
    unlink_ship(r, s);
    agent_replserver_answer(s->call, s->status, s->status < 0 ? s->error : NULL);
    free(s);
}

/* One part of s ended (a copy, or the hold while they start). */
static void part_done(ship *s, int status, const char *error)
{
    if (status < 0 && s->status == 0) {
        s->status = status;
        snprintf(s->error, sizeof(s->error), "%s", error ? error : strerror(-status));
    }
    if (--s->pending == 0)
        ship_end(s);
}

static void on_copied(void *arg, int status, const char *error)
{
    copy *c = arg;

    c->q = NULL; /* (the client frees itself) */
    part_done(c->s, status, error);
}

/* Are a and b (n bytes each) equal? Every byte is compared. */
static bool same_secret(const char *a, const char *b, size_t n)
{
    unsigned char diff = 0;

    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

/* The replication address node published, or NULL. */
static const char *address_of(agent *a, const char *node, char *out, size_t cap)
{
    json_t *info = agent_cluster_node_info(a, node);
    const char *v = json_string_value(json_object_get(info, "replica_address"));

    if (v)
        snprintf(out, cap, "%s", v);
    json_decref(info);
    return v ? out : NULL;
}

static void on_ship(void *arg, agent_replserver_call *call, const char *instance,
                    const char *token, uint64_t version, const char *path, uid_t peer_uid)
{
    agent_replica *r = arg;
    agent *a = r->a;
    int i = agent_state_find(&a->st, instance);
    const agent_instance *in = i >= 0 ? &a->st.inst[i] : NULL;
    const agent_slot *slot;
    ship *s;
    char addr[300];

    if (!in || strlen(token) != AGENT_TOKEN_LEN ||
        !same_secret(token, in->token, AGENT_TOKEN_LEN)) {
        agent_replserver_answer(call, -EPERM, "no instance of that name and token on this "
                                "node");
        return;
    }
    if (a->spec_adopted == 0) {
        /* (after a restart, before this agent took the cluster's record:
         * it does not know the replica nodes yet) */
        agent_replserver_answer(call, -EAGAIN, "this agent has not taken the cluster's "
                                "placement yet");
        return;
    }
    slot = slot_of(a, in);
    if (!slot || slot->nreplicas == 0) {
        agent_replserver_answer(call, 0, NULL); /* no copies wanted */
        return;
    }
    s = calloc(1, sizeof(*s));
    if (!s) {
        agent_replserver_answer(call, -ENOMEM, "out of memory");
        return;
    }
    s->r = r;
    s->call = call;
    snprintf(s->instance, sizeof(s->instance), "%s", instance);
    s->worker = in->worker;
    s->version = version;
    s->next = r->ships;
    r->ships = s;
    s->pending = 1; /* (held while the copies start) */
    for (unsigned k = 0; k < slot->nreplicas; k++) {
        agent_replclient_job job = { .peer_name = slot->replica[k], .cluster = a->cfg->cluster,
                                     .deployment = in->deployment, .worker = in->worker,
                                     .version = version, .path = path, .owner = peer_uid,
                                     .timeout_ms = SHIP_TIMEOUT_MS,
                                     .tls = a->tls ? a->tls->client : NULL };
        job.peer = address_of(a, slot->replica[k], addr, sizeof(addr));
        s->pending++;
        s->c[k].s = s;
        snprintf(s->c[k].node, sizeof(s->c[k].node), "%s", slot->replica[k]);
        if (!job.peer) {
            char why[200];
            snprintf(why, sizeof(why), "%s has not told its replication address yet",
                     slot->replica[k]);
            part_done(s, -EHOSTUNREACH, why);
        } else if (agent_replclient_send(a->loop, &job, on_copied, &s->c[k], &s->c[k].q) < 0) {
            part_done(s, -ENOMEM, "out of memory");
        }
    }
    part_done(s, 0, NULL); /* (the hold) */
}

/* ---- pruning --------------------------------------------------------------------------- */

/* Does an instance moved here still need its copies (it has not been
 * ready since it moved: it starts from them)? */
static bool moving_in(agent *a, const char *deployment, uint32_t shard, const agent_slot *sl)
{
    char name[AGENT_INSTANCE_NAME_MAX + 1];
    inst_rt *rt;

    if (!sl->token[0] || strcmp(sl->node, a->cfg->node_name) != 0)
        return false;
    snprintf(name, sizeof(name), "%s-%u", deployment, shard);
    rt = agent_rt_find(a, name);
    return !rt || !agent_rt_ready(rt);
}

/* Is this node a replica of (deployment, worker) in the placement it took,
 * or does an instance moved here still need the copies? */
static bool holds(agent *a, const char *deployment, uint64_t worker)
{
    const agent_placed_dep *d = agent_placement_find(&a->placement, deployment);

    for (uint32_t s = 0; d && s < d->shards; s++) {
        const agent_slot *sl = &d->slot[s];
        if (sl->worker != worker)
            continue;
        if (moving_in(a, deployment, s, sl))
            return true;
        for (unsigned k = 0; k < sl->nreplicas; k++)
            if (strcmp(sl->replica[k], a->cfg->node_name) == 0)
                return true;
    }
    return false;
}

static void prune_deployment(agent_replica *r, const char *deployment)
{
    agent *a = r->a;
    char dir[4096];
    DIR *d;
    struct dirent *e;
    dpr_finder *f = agent_domain(a, deployment);

    if (snprintf(dir, sizeof(dir), "%s/%s", r->root, deployment) >= (int)sizeof(dir) ||
        !(d = opendir(dir)))
        return;
    while ((e = readdir(d))) {
        uint64_t worker;
        if (dpr_parse_u64_str(e->d_name, 1, UINT64_MAX, &worker) < 0)
            continue;
        if (!holds(a, deployment, worker)) {
            /* (the spec took it away, or another node holds its copies now) */
            if (agent_replstore_drop(r->root, deployment, worker) == 0)
                log_info("replication: dropped the copies of %s worker %" PRIu64
                         " (this node is no replica of it any more)", deployment, worker);
            continue;
        }
        if (f)
            agent_replstore_prune(r->root, deployment, worker, dpr_finder_cut_of(f, worker));
    }
    closedir(d);
    rmdir(dir); /* (fails unless empty) */
}

/* Is node still a replica node of instance in, up, in the placement this
 * node took? */
static bool still_replica(agent *a, const agent_instance *in, const char *node)
{
    const agent_slot *slot = slot_of(a, in);

    for (unsigned k = 0; slot && k < slot->nreplicas; k++)
        if (strcmp(slot->replica[k], node) == 0)
            return !agent_placement_is_down(&a->placement, node);
    return false;
}

/* Copies to a node that is no longer a replica node of their instance (it
 * went down: the placement gave the copies to another one) are abandoned
 * and their ship fails at once: the cache-store asks again a second later,
 * and that ship goes to the replica nodes of now. Without this, a copy to a
 * node that stopped answering (alive but silent) held the instance's
 * reports, and so the cut, until SHIP_TIMEOUT_MS. */
static void abandon_stale_copies(agent_replica *r)
{
    agent *a = r->a;
    ship *next;

    for (ship *s = r->ships; s; s = next) {
        int i = agent_state_find(&a->st, s->instance);
        const agent_instance *in = i >= 0 ? &a->st.inst[i] : NULL;
        unsigned stale = 0, k;

        next = s->next;
        for (k = 0; k < AGENT_REPLICAS_MAX; k++)
            if (s->c[k].q && (!in || !still_replica(a, in, s->c[k].node)))
                stale++;
        if (stale == 0)
            continue;
        /* (part_done may end s: next is taken first, and s is not used
         * after its last part) */
        for (k = 0; k < AGENT_REPLICAS_MAX && stale > 0; k++) {
            char why[200];
            if (!s->c[k].q || (in && still_replica(a, in, s->c[k].node)))
                continue;
            agent_replclient_cancel(s->c[k].q);
            s->c[k].q = NULL;
            snprintf(why, sizeof(why), "%s is no longer a replica node of %s (down, or "
                     "placed elsewhere): copying again to the replica nodes of now",
                     s->c[k].node, s->instance);
            stale--;
            part_done(s, -EAGAIN, why);
        }
    }
}

void agent_replica_tick(agent *a)
{
    agent_replica *r = a->replica;
    DIR *d;
    struct dirent *e;

    if (r)
        abandon_stale_copies(r);
    /* (only once this node took a placement: before, it knows nothing) */
    if (!r || a->placement.next_worker == 0 || !(d = opendir(r->root)))
        return;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && agent_name_valid(e->d_name, AGENT_DEPLOY_NAME_MAX))
            prune_deployment(r, e->d_name);
    closedir(d);
}

/* ---- life cycle, status ----------------------------------------------------------------- */

static gid_t cs_gid; /* (for share_entry: nftw passes no argument) */

/* One entry of the replicas tree: the instances' group, directories 0750,
 * files 0640 (what is made there later gets both from replstore.c). */
static int share_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    mode_t mode = type == FTW_D ? 0750 : 0640;

    (void)ftw;
    if (type != FTW_D && type != FTW_F)
        return 0; /* (nothing else is made there) */
    if (st->st_gid != cs_gid && chown(path, (uid_t)-1, cs_gid) < 0)
        return -errno;
    if ((st->st_mode & 07777) != mode && chmod(path, mode) < 0)
        return -errno;
    return 0;
}

/* Opens the replicas tree (also what an older agent made, root's alone)
 * and the replication socket to the instances' group, when it exists. */
static int share_with_instances(agent_replica *r, dpr_err *err)
{
    struct group *gr = getgrnam(AGENT_CS_GROUP);
    const char *sock = r->a->cfg->repl_socket;
    int rc;

    if (!gr) {
        log_info("replication: no group %s: the replicas and %s are root's alone (cache-stores "
                 "that run as root)", AGENT_CS_GROUP, sock);
        return 0;
    }
    cs_gid = gr->gr_gid;
    rc = nftw(r->root, share_entry, 16, FTW_PHYS);
    if (rc != 0)
        return dpr_err_set(err, rc < 0 ? rc : -EIO, "replicas directory %s: cannot give it "
                           "to group %s: %s", r->root, AGENT_CS_GROUP,
                           strerror(rc < 0 ? -rc : EIO));
    if (chown(sock, (uid_t)-1, cs_gid) < 0 || chmod(sock, 0660) < 0)
        return dpr_err_set(err, -errno, "replication: cannot give %s to group %s: %s", sock,
                           AGENT_CS_GROUP, strerror(errno));
    agent_replstore_set_group(cs_gid);
    return 0;
}

int agent_replica_start(agent *a, dpr_err *err)
{
    agent_replica *r = calloc(1, sizeof(*r));
    int rc;

    if (!r)
        return dpr_err_set(err, -ENOMEM, "out of memory");
    r->a = a;
    rc = dpr_path_join(r->root, sizeof(r->root), a->cfg->state_dir, "replicas");
    if (rc == 0)
        rc = dpr_mkdir_p(r->root, 0700, err);
    if (rc < 0) {
        free(r);
        return err->code ? rc : dpr_err_set(err, rc, "replicas directory %s: %s", r->root,
                                            strerror(-rc));
    }
    rc = agent_replserver_start(a->loop, a->cfg->repl_listen, a->cfg->cluster, r->root,
                                &r->srv, err);
    if (rc == 0) {
        agent_replserver_set_tls(r->srv, a->tls ? a->tls->server : NULL);
        rc = agent_replserver_listen_local(r->srv, a->cfg->repl_socket, on_ship, r, err);
    }
    if (rc == 0)
        rc = share_with_instances(r, err);
    if (rc < 0) {
        agent_replserver_stop(r->srv);
        free(r);
        return rc;
    }
    a->replica = r;
    log_info("replication: copies of checkpoints from other nodes on %s%s, cache-stores ask "
             "on %s", agent_replserver_address(r->srv), a->tls ? " (TLS)" : "",
             a->cfg->repl_socket);
    return 0;
}

void agent_replica_set_tls(agent *a, const struct agent_tls *tls)
{
    if (a->replica)
        agent_replserver_set_tls(a->replica->srv, tls ? tls->server : NULL);
}

const char *agent_replica_address(agent *a)
{
    return a->replica ? agent_replserver_address(a->replica->srv) : NULL;
}

const char *agent_replica_root(agent *a)
{
    return a->replica ? a->replica->root : NULL;
}

json_t *agent_replica_instance_json(agent *a, const agent_instance *in)
{
    const agent_slot *slot = slot_of(a, in);
    json_t *o = json_object(), *reps = json_array();
    inst_note *n = NULL;

    for (size_t i = 0; a->replica && i < a->replica->nnotes; i++)
        if (strcmp(a->replica->notes[i].name, in->name) == 0 &&
            a->replica->notes[i].worker == in->worker)
            n = &a->replica->notes[i];
    for (unsigned k = 0; slot && reps && k < slot->nreplicas; k++)
        json_array_append_new(reps, json_string(slot->replica[k]));
    json_object_set_new(o, "replicas", reps ? reps : json_null());
    json_object_set_new(o, "replicated", n && n->replicated
                                             ? json_integer((json_int_t)n->replicated)
                                             : json_null());
    json_object_set_new(o, "replica_error", n && n->error[0] ? json_string(n->error)
                                                             : json_null());
    return o;
}

void agent_replica_stop(agent *a)
{
    agent_replica *r = a->replica;

    if (!r)
        return;
    a->replica = NULL;
    while (r->ships) {
        ship *s = r->ships;
        r->ships = s->next;
        for (unsigned k = 0; k < AGENT_REPLICAS_MAX; k++)
            agent_replclient_cancel(s->c[k].q);
        agent_replserver_answer(s->call, -ESHUTDOWN, "the agent is stopping");
        free(s);
    }
    agent_replserver_stop(r->srv);
    free(r->notes);
    free(r);
}
