/* cstate.c - the cluster's replicated state and its images (see cstate.h). */
#include "cstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"
#include "placement.h"

#include <jansson.h>

#define ENTRY_MAGIC "DPRE"
#define SNAP_MAGIC "DPRS"
#define MAGIC_LEN 4
#define FORMAT 1       /* of entries */
#define SNAP_FORMAT 4  /* of snapshots written: nodes, spec, instance records */
#define SNAP_FORMAT_NO_INSTANCES 3
#define SNAP_FORMAT_NO_NODES 1
#define SPEC_MAX ((size_t)16 << 20)
#define ENTRY_HEAD (MAGIC_LEN + 1 + 1 + 8)
#define SNAP_HEAD (MAGIC_LEN + 1 + 8)
#define CRC_LEN 4
/* c-raft's on-disk format wants entries in multiples of 8 bytes. */
#define ENTRY_ALIGN 8

static int append_crc(dpr_buf *out)
{
    uint32_t c = dpr_crc32((const unsigned char *)out->data, out->len);
    unsigned char b[CRC_LEN];

    for (int i = 0; i < CRC_LEN; i++)
        b[i] = (unsigned char)(c >> (8 * i));
    return dpr_buf_append(out, b, CRC_LEN);
}

/* Checks magic, format (up to max_format) and checksum of an image of at
 * least head bytes whose checksum ends it at len. */
static int check_frame(const unsigned char *p, size_t len, const char *magic, size_t head,
                       int max_format, const char *what, dpr_err *err)
{
    if (len < head + CRC_LEN)
        return dpr_err_set(err, -EBADMSG, "%s: truncated (%zu bytes)", what, len);
    if (memcmp(p, magic, MAGIC_LEN) != 0)
        return dpr_err_set(err, -EBADMSG, "%s: bad magic", what);
    if (dpr_crc32(p, len - CRC_LEN) != dpr_get_le32(p + len - CRC_LEN))
        return dpr_err_set(err, -EBADMSG, "%s: checksum mismatch", what);
    if (p[MAGIC_LEN] < 1 || p[MAGIC_LEN] > max_format)
        return dpr_err_set(err, -EPROTONOSUPPORT,
                           "%s: format %u (this agent reads formats 1 to %d: a newer agent "
                           "wrote it; upgrade this one)", what, p[MAGIC_LEN], max_format);
    return 0;
}

/* ---- the node table ---------------------------------------------------- */

static bool name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > AGENT_CSTATE_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '.' || s[i] == '_'))
            return false;
    return true;
}

static bool addr_ok(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > AGENT_CSTATE_ADDR_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return false;
    return true;
}

bool agent_cstate_node_valid(const agent_cstate_node *n)
{
    return n->id != 0 && name_ok(n->name) && addr_ok(n->raft) && addr_ok(n->finder);
}

static void put_str(dpr_buf *out, const char *s)
{
    unsigned char len = (unsigned char)strlen(s);

    dpr_buf_append(out, &len, 1);
    dpr_buf_append(out, s, len);
}

/* Appends n's record (valid: lengths fit a byte). */
static int put_node(dpr_buf *out, const agent_cstate_node *n)
{
    dpr_buf_append_le64(out, n->id);
    put_str(out, n->name);
    put_str(out, n->raft);
    put_str(out, n->finder);
    return dpr_buf_failed(out) ? -ENOMEM : 0;
}

int agent_cstate_node_payload(const agent_cstate_node *n, dpr_buf *out)
{
    dpr_buf_reset(out);
    if (!agent_cstate_node_valid(n))
        return -EINVAL;
    return put_node(out, n);
}

/* Reads one string field into dst (cap bytes with its NUL). */
static int take_str(const unsigned char **p, size_t *left, char *dst, size_t cap)
{
    size_t n;

    if (*left < 1)
        return -1;
    n = (*p)[0];
    if (n >= cap || *left - 1 < n || memchr(*p + 1, '\0', n))
        return -1;
    memcpy(dst, *p + 1, n);
    dst[n] = '\0';
    *p += 1 + n;
    *left -= 1 + n;
    return 0;
}

/* Reads one node record; -1 when it does not fit or is invalid. */
static int take_node(const unsigned char **p, size_t *left, agent_cstate_node *n)
{
    memset(n, 0, sizeof(*n));
    if (*left < 8)
        return -1;
    n->id = dpr_get_le64(*p);
    *p += 8;
    *left -= 8;
    if (take_str(p, left, n->name, sizeof(n->name)) < 0 ||
        take_str(p, left, n->raft, sizeof(n->raft)) < 0 ||
        take_str(p, left, n->finder, sizeof(n->finder)) < 0)
        return -1;
    return agent_cstate_node_valid(n) ? 0 : -1;
}

static size_t node_index(const agent_cstate *cs, uint64_t id, bool *found)
{
    size_t lo = 0, hi = cs->nnodes;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cs->nodes[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < cs->nnodes && cs->nodes[lo].id == id;
    return lo;
}

const agent_cstate_node *agent_cstate_node_find(const agent_cstate *cs, uint64_t id)
{
    bool found;
    size_t i = node_index(cs, id, &found);

    return found ? &cs->nodes[i] : NULL;
}

const agent_cstate_node *agent_cstate_node_named(const agent_cstate *cs, const char *name)
{
    for (size_t i = 0; i < cs->nnodes; i++)
        if (strcmp(cs->nodes[i].name, name) == 0)
            return &cs->nodes[i];
    return NULL;
}

/* Adds or replaces n: 0, -ENOMEM, -ENOSPC (the table is full). */
static int node_upsert(agent_cstate *cs, const agent_cstate_node *n)
{
    bool found;
    size_t i = node_index(cs, n->id, &found);
    agent_cstate_node *v;

    if (found) {
        cs->nodes[i] = *n;
        return 0;
    }
    if (cs->nnodes >= AGENT_CSTATE_MAX_NODES)
        return -ENOSPC;
    v = realloc(cs->nodes, (cs->nnodes + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    cs->nodes = v;
    memmove(&v[i + 1], &v[i], (cs->nnodes - i) * sizeof(*v));
    v[i] = *n;
    cs->nnodes++;
    return 0;
}

static void node_remove(agent_cstate *cs, uint64_t id)
{
    bool found;
    size_t i = node_index(cs, id, &found);

    if (!found)
        return;
    memmove(&cs->nodes[i], &cs->nodes[i + 1], (cs->nnodes - i - 1) * sizeof(*cs->nodes));
    cs->nnodes--;
}


/* Is p[0..len) a spec record ({"generation": N >= 1, "spec": {...},
 * "placement": a placement record, placement.h})? Its generation in *gen. */
static bool spec_ok(const unsigned char *p, size_t len, uint64_t *gen)
{
    agent_placement placed;
    json_t *j, *g, *sp, *pl;
    bool ok;

    if (len == 0 || len > SPEC_MAX)
        return false;
    j = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, NULL);
    g = json_object_get(j, "generation");
    sp = json_object_get(j, "spec");
    pl = json_object_get(j, "placement");
    ok = json_is_object(j) && json_object_size(j) == 3 && json_is_integer(g) &&
         json_integer_value(g) >= 1 && json_is_object(sp) &&
         agent_placement_from_json(pl, &placed) == 0;
    if (ok) {
        agent_placement_free(&placed);
        *gen = (uint64_t)json_integer_value(g);
    }
    json_decref(j);
    return ok;
}

/* Replaces cs's spec record with a copy of p[0..len) (checked). */
static int set_spec(agent_cstate *cs, const unsigned char *p, size_t len, uint64_t gen)
{
    char *copy = malloc(len + 1);

    if (!copy)
        return -ENOMEM;
    memcpy(copy, p, len);
    copy[len] = '\0';
    free(cs->spec);
    cs->spec = copy;
    cs->spec_len = len;
    cs->spec_generation = gen;
    return 0;
}

int agent_cstate_spec_payload(uint64_t generation, const json_t *spec, const json_t *placement,
                              dpr_buf *out)
{
    json_t *j = json_pack("{s:I, s:O, s:O}", "generation", (json_int_t)generation, "spec", spec,
                          "placement", placement);
    char *text = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    uint64_t gen;
    int rc = 0;

    dpr_buf_reset(out);
    if (!text)
        rc = -ENOMEM;
    else if (!spec_ok((const unsigned char *)text, strlen(text), &gen))
        rc = -EINVAL;
    else if (dpr_buf_append(out, text, strlen(text)) < 0)
        rc = -ENOMEM;
    free(text);
    json_decref(j);
    return rc;
}

/* Is p[0..len) an instance record ({"node": NAME, "deployments": [...]})?
 * Its node in node (cap bytes). */
static bool insts_ok(const unsigned char *p, size_t len, char *node, size_t cap)
{
    json_t *j, *n;
    bool ok;

    if (len == 0 || len > SPEC_MAX)
        return false;
    j = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, NULL);
    n = json_object_get(j, "node");
    ok = json_is_object(j) && json_is_string(n) && name_ok(json_string_value(n)) &&
         strlen(json_string_value(n)) < cap && json_is_array(json_object_get(j, "deployments"));
    if (ok)
        snprintf(node, cap, "%s", json_string_value(n));
    json_decref(j);
    return ok;
}

/* Adds or replaces the instance record of node (a copy of p[0..len)). */
static int set_insts(agent_cstate *cs, const char *node, const unsigned char *p, size_t len)
{
    size_t i;
    char *copy = malloc(len + 1);

    if (!copy)
        return -ENOMEM;
    memcpy(copy, p, len);
    copy[len] = '\0';
    for (i = 0; i < cs->ninsts && strcmp(cs->insts[i].node, node) < 0; i++)
        ;
    if (i < cs->ninsts && strcmp(cs->insts[i].node, node) == 0) {
        free(cs->insts[i].json);
    } else {
        agent_cstate_insts *v;
        if (cs->ninsts >= AGENT_CSTATE_MAX_NODES ||
            !(v = realloc(cs->insts, (cs->ninsts + 1) * sizeof(*v)))) {
            free(copy);
            return -ENOMEM;
        }
        cs->insts = v;
        memmove(&v[i + 1], &v[i], (cs->ninsts - i) * sizeof(*v));
        cs->ninsts++;
        snprintf(v[i].node, sizeof(v[i].node), "%s", node);
    }
    cs->insts[i].json = copy;
    cs->insts[i].len = len;
    return 0;
}

static void drop_insts(agent_cstate *cs, const char *node)
{
    for (size_t i = 0; i < cs->ninsts; i++)
        if (strcmp(cs->insts[i].node, node) == 0) {
            free(cs->insts[i].json);
            memmove(&cs->insts[i], &cs->insts[i + 1],
                    (cs->ninsts - i - 1) * sizeof(*cs->insts));
            cs->ninsts--;
            return;
        }
}

const char *agent_cstate_insts_of(const agent_cstate *cs, const char *node)
{
    for (size_t i = 0; i < cs->ninsts; i++)
        if (strcmp(cs->insts[i].node, node) == 0)
            return cs->insts[i].json;
    return NULL;
}

/* Replaces cs's finder image with a copy of p[0..len) (len 0: none). */
static int set_finder(agent_cstate *cs, const unsigned char *p, size_t len)
{
    unsigned char *copy = NULL;

    if (len > 0) {
        copy = malloc(len);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, p, len);
    }
    free(cs->finder);
    cs->finder = copy;
    cs->finder_len = len;
    return 0;
}

void agent_cstate_init(agent_cstate *cs)
{
    memset(cs, 0, sizeof(*cs));
}

void agent_cstate_free(agent_cstate *cs)
{
    free(cs->finder);
    free(cs->nodes);
    free(cs->spec);
    for (size_t i = 0; i < cs->ninsts; i++)
        free(cs->insts[i].json);
    free(cs->insts);
    agent_cstate_init(cs);
}

int agent_cstate_entry_encode(int type, const void *payload, size_t len, dpr_buf *out)
{
    static const unsigned char zeros[ENTRY_ALIGN];
    unsigned char head[2] = { FORMAT, (unsigned char)type };
    size_t total = ENTRY_HEAD + len + CRC_LEN;

    dpr_buf_reset(out);
    if (dpr_buf_reserve(out, total + ENTRY_ALIGN) < 0)
        return -ENOMEM;
    /* cannot fail after the reservation */
    dpr_buf_append(out, ENTRY_MAGIC, MAGIC_LEN);
    dpr_buf_append(out, head, 2);
    dpr_buf_append_le64(out, (uint64_t)len);
    dpr_buf_append(out, payload, len);
    append_crc(out);
    return dpr_buf_append(out, zeros, (ENTRY_ALIGN - total % ENTRY_ALIGN) % ENTRY_ALIGN);
}

int agent_cstate_apply(agent_cstate *cs, const void *entry, size_t len, dpr_err *err)
{
    const unsigned char *p = entry;
    uint64_t plen;
    int rc;

    if (len < ENTRY_HEAD + CRC_LEN)
        return dpr_err_set(err, -EBADMSG, "raft entry: truncated (%zu bytes)", len);
    /* the frame ends at its checksum; zero padding up to the alignment
     * follows */
    plen = dpr_get_le64(p + MAGIC_LEN + 2);
    if (plen > len - ENTRY_HEAD - CRC_LEN ||
        len - ENTRY_HEAD - CRC_LEN - plen >= ENTRY_ALIGN)
        return dpr_err_set(err, -EBADMSG, "raft entry: payload length %llu does not match "
                           "its size %zu", (unsigned long long)plen, len);
    for (size_t i = ENTRY_HEAD + (size_t)plen + CRC_LEN; i < len; i++)
        if (p[i] != 0)
            return dpr_err_set(err, -EBADMSG, "raft entry: damaged padding");
    rc = check_frame(p, ENTRY_HEAD + (size_t)plen + CRC_LEN, ENTRY_MAGIC, ENTRY_HEAD, FORMAT,
                     "raft entry", err);
    if (rc < 0)
        return rc;
    switch (p[MAGIC_LEN + 1]) {
    case AGENT_CSTATE_ENTRY_FINDER:
        if (plen == 0)
            return dpr_err_set(err, -EBADMSG, "raft entry: an empty finder state");
        rc = set_finder(cs, p + ENTRY_HEAD, (size_t)plen);
        break;
    case AGENT_CSTATE_ENTRY_NODE: {
        const unsigned char *q = p + ENTRY_HEAD;
        size_t left = (size_t)plen;
        agent_cstate_node n;
        if (take_node(&q, &left, &n) < 0 || left != 0)
            return dpr_err_set(err, -EBADMSG, "raft entry: a bad node record");
        rc = node_upsert(cs, &n);
        if (rc == -ENOSPC)
            return dpr_err_set(err, rc, "raft entry: more than %d nodes",
                               AGENT_CSTATE_MAX_NODES);
        break;
    }
    case AGENT_CSTATE_ENTRY_SPEC: {
        uint64_t gen;
        if (!spec_ok(p + ENTRY_HEAD, (size_t)plen, &gen))
            return dpr_err_set(err, -EBADMSG, "raft entry: a bad spec record");
        rc = set_spec(cs, p + ENTRY_HEAD, (size_t)plen, gen);
        break;
    }
    case AGENT_CSTATE_ENTRY_INSTANCES: {
        char node[AGENT_CSTATE_NAME_MAX + 1];
        if (!insts_ok(p + ENTRY_HEAD, (size_t)plen, node, sizeof(node)))
            return dpr_err_set(err, -EBADMSG, "raft entry: a bad instance record");
        rc = set_insts(cs, node, p + ENTRY_HEAD, (size_t)plen);
        break;
    }
    case AGENT_CSTATE_ENTRY_NODE_GONE: {
        const agent_cstate_node *gone;
        if (plen != 8)
            return dpr_err_set(err, -EBADMSG, "raft entry: a bad node removal");
        gone = agent_cstate_node_find(cs, dpr_get_le64(p + ENTRY_HEAD));
        if (gone)
            drop_insts(cs, gone->name);
        node_remove(cs, dpr_get_le64(p + ENTRY_HEAD));
        rc = 0;
        break;
    }
    default:
        return dpr_err_set(err, -EPROTONOSUPPORT, "raft entry: unknown type %u (a newer "
                           "agent wrote it; upgrade this one)", p[MAGIC_LEN + 1]);
    }
    if (rc < 0)
        return dpr_err_set(err, rc, "out of memory applying a raft entry");
    cs->changes++;
    return 0;
}

int agent_cstate_snapshot(const agent_cstate *cs, dpr_buf *out)
{
    unsigned char format = SNAP_FORMAT;

    dpr_buf_reset(out);
    if (dpr_buf_reserve(out, SNAP_HEAD + cs->finder_len + 8 +
                                 cs->nnodes * sizeof(agent_cstate_node) + 8 + cs->spec_len +
                                 CRC_LEN) < 0)
        return -ENOMEM;
    dpr_buf_append(out, SNAP_MAGIC, MAGIC_LEN);
    dpr_buf_append(out, &format, 1);
    dpr_buf_append_le64(out, (uint64_t)cs->finder_len);
    dpr_buf_append(out, cs->finder, cs->finder_len);
    dpr_buf_append_le64(out, (uint64_t)cs->nnodes);
    for (size_t i = 0; i < cs->nnodes; i++)
        put_node(out, &cs->nodes[i]);
    dpr_buf_append_le64(out, (uint64_t)cs->spec_len);
    dpr_buf_append(out, cs->spec, cs->spec_len);
    dpr_buf_append_le64(out, (uint64_t)cs->ninsts);
    for (size_t i = 0; i < cs->ninsts; i++) {
        dpr_buf_append_le64(out, (uint64_t)cs->insts[i].len);
        dpr_buf_append(out, cs->insts[i].json, cs->insts[i].len);
    }
    return dpr_buf_failed(out) ? -ENOMEM : append_crc(out);
}

/* The node table (and from format 3 the spec record) of a snapshot (q:
 * after the finder image). */
static int restore_rest(agent_cstate *fresh, int format, const unsigned char *q, size_t left,
                        dpr_err *err)
{
    uint64_t n;

    if (left < 8)
        return dpr_err_set(err, -EBADMSG, "raft snapshot: truncated before its nodes");
    n = dpr_get_le64(q);
    q += 8;
    left -= 8;
    if (n > AGENT_CSTATE_MAX_NODES)
        return dpr_err_set(err, -EBADMSG, "raft snapshot: %llu nodes", (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++) {
        agent_cstate_node node;
        if (take_node(&q, &left, &node) < 0 ||
            (fresh->nnodes && fresh->nodes[fresh->nnodes - 1].id >= node.id))
            return dpr_err_set(err, -EBADMSG, "raft snapshot: a bad node record");
        if (node_upsert(fresh, &node) < 0)
            return dpr_err_set(err, -ENOMEM, "out of memory restoring a raft snapshot");
    }
    if (format >= SNAP_FORMAT_NO_INSTANCES) {
        uint64_t slen, gen = 0;
        if (left < 8)
            return dpr_err_set(err, -EBADMSG, "raft snapshot: truncated before its spec");
        slen = dpr_get_le64(q);
        q += 8;
        left -= 8;
        if (slen > left || (format == SNAP_FORMAT_NO_INSTANCES && slen != left) ||
            (slen > 0 && !spec_ok(q, (size_t)slen, &gen)))
            return dpr_err_set(err, -EBADMSG, "raft snapshot: a bad spec record");
        if (slen > 0 && set_spec(fresh, q, (size_t)slen, gen) < 0)
            return dpr_err_set(err, -ENOMEM, "out of memory restoring a raft snapshot");
        q += slen;
        left -= (size_t)slen;
    }
    if (format >= SNAP_FORMAT) {
        uint64_t nrec;
        if (left < 8)
            return dpr_err_set(err, -EBADMSG, "raft snapshot: truncated before its instances");
        nrec = dpr_get_le64(q);
        q += 8;
        left -= 8;
        if (nrec > AGENT_CSTATE_MAX_NODES)
            return dpr_err_set(err, -EBADMSG, "raft snapshot: %llu instance records",
                               (unsigned long long)nrec);
        for (uint64_t i = 0; i < nrec; i++) {
            char node[AGENT_CSTATE_NAME_MAX + 1];
            uint64_t len;
            if (left < 8)
                return dpr_err_set(err, -EBADMSG, "raft snapshot: a bad instance record");
            len = dpr_get_le64(q);
            q += 8;
            left -= 8;
            if (len > left || !insts_ok(q, (size_t)len, node, sizeof(node)) ||
                (fresh->ninsts && strcmp(fresh->insts[fresh->ninsts - 1].node, node) >= 0))
                return dpr_err_set(err, -EBADMSG, "raft snapshot: a bad instance record");
            if (set_insts(fresh, node, q, (size_t)len) < 0)
                return dpr_err_set(err, -ENOMEM, "out of memory restoring a raft snapshot");
            q += len;
            left -= (size_t)len;
        }
    }
    if (left != 0)
        return dpr_err_set(err, -EBADMSG, "raft snapshot: %zu bytes after the nodes", left);
    return 0;
}

int agent_cstate_restore(agent_cstate *cs, const void *image, size_t len, dpr_err *err)
{
    const unsigned char *p = image;
    agent_cstate fresh;
    uint64_t flen;
    size_t body;
    int rc;

    rc = check_frame(p, len, SNAP_MAGIC, SNAP_HEAD, SNAP_FORMAT, "raft snapshot", err);
    if (rc < 0)
        return rc;
    flen = dpr_get_le64(p + MAGIC_LEN + 1);
    body = len - SNAP_HEAD - CRC_LEN;
    if (p[MAGIC_LEN] == SNAP_FORMAT_NO_NODES ? flen != body : flen > body)
        return dpr_err_set(err, -EBADMSG, "raft snapshot: finder state length %llu does not "
                           "match its size %zu", (unsigned long long)flen, len);
    agent_cstate_init(&fresh);
    if (p[MAGIC_LEN] != SNAP_FORMAT_NO_NODES)
        rc = restore_rest(&fresh, p[MAGIC_LEN], p + SNAP_HEAD + flen, body - (size_t)flen, err);
    if (rc == 0 && set_finder(&fresh, p + SNAP_HEAD, (size_t)flen) < 0)
        rc = dpr_err_set(err, -ENOMEM, "out of memory restoring a raft snapshot");
    if (rc < 0) {
        agent_cstate_free(&fresh);
        return rc;
    }
    fresh.changes = cs->changes + 1;
    agent_cstate_free(cs);
    *cs = fresh;
    return 0;
}
