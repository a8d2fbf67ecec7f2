/*
 * store_image.c - the finder state's byte image (see store.h and
 * docs/finder-store.md): what the file store writes to `finder.state` and
 * what a replicated store carries in its log. Pure: no I/O.
 *
 * Little-endian:
 *
 *   magic "DPRFIND\0" (8), format 3 (1 byte),
 *   generation of the whole state (8),
 *   ndomains (8), then per domain, names strictly rising (byte order):
 *     name length (1 byte, 1..DPR_DOMAIN_MAX) and the name (dpr/domain.h),
 *     then the domain's content:
 *       world-line (8, >= 1), generation (8),
 *       nworkers (8), then per worker: id, cut, durable (8 each), ids
 *         strictly rising, cut <= durable; token length t (1 byte, 0..128)
 *         and t token bytes (0x21..0x7e; t = 0: registered without a token),
 *         format 4 only: flags (1 byte: bit 0 away, other bits 0; away
 *         needs cut == durable),
 *       nprefixes (8, <= DPR_FINDER_MAX_PREFIXES), then per prefix: ended
 *         world-line (8, rising, below world-line), n (8), n x (worker,
 *         version) (8 each, workers strictly rising, versions >= 1),
 *   CRC-32 (zlib, 4 bytes) of everything before it.
 *
 * Formats 1 and 2 (before domains) hold one content right after the format
 * byte (format 1 without the token fields); they decode as one domain named
 * DPR_DOMAIN_DEFAULT, the whole state's generation being that content's.
 * Encoding writes format 3 while no worker is away (so that an older finder
 * or agent, in a rolling upgrade, still reads the state), format 4 (format
 * 3 with a flags byte per worker) when one is.
 */
#include "dpr/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/bytes.h"
#include "common/err.h"

#define MAGIC "DPRFIND\0"
#define MAGIC_LEN 8
#define FORMAT_AWAY 4      /* written when a worker is away: a flags byte per worker */
#define FORMAT 3           /* written otherwise: domains */
#define FLAG_AWAY 0x01
#define FLAGS_LEN 1
#define FORMAT_ONE_DOMAIN 2 /* still read: one domain, "default" */
#define FORMAT_NO_TOKENS 1 /* still read: format 2 without token fields */
#define CONTENT_HEAD_LEN (3 * 8) /* world-line, generation, nworkers */
#define WORKER_LEN (3 * 8) /* without the token fields of formats 2 and 3 */
#define TOKEN_LEN_LEN 1
#define NAME_LEN_LEN 1
#define PREFIX_HEADER_LEN (2 * 8)
#define DEP_LEN (2 * 8)
#define CRC_LEN 4
/* The smallest valid images: one empty content (formats 1, 2), no domain (3). */
#define MIN_FILE_LEN_ONE (MAGIC_LEN + 1 + CONTENT_HEAD_LEN + 8 + CRC_LEN)
#define MIN_FILE_LEN (MAGIC_LEN + 1 + 2 * 8 + CRC_LEN)
#define MIN_DOMAIN_LEN (NAME_LEN_LEN + 1 + CONTENT_HEAD_LEN + 8)
#define MAX_FILE_LEN DPR_STORE_IMAGE_MAX

/* Checks the content rules of one domain shared by load and save; NULL if
 * fine, else a description (written to msg). */
static const char *check_state(const dpr_finder_state *st, char *msg, size_t msglen)
{
    if (st->world_line == 0) {
        snprintf(msg, msglen, "world-line is 0");
        return msg;
    }
    if (st->nworkers > 0 && !st->workers) {
        snprintf(msg, msglen, "%zu workers without their records", st->nworkers);
        return msg;
    }
    for (size_t i = 0; i < st->nworkers; i++) {
        const dpr_finder_worker_state *w = &st->workers[i];
        if (w->cut > w->durable) {
            snprintf(msg, msglen,
                     "worker %llu has cut %llu above its durable version %llu",
                     (unsigned long long)w->worker, (unsigned long long)w->cut,
                     (unsigned long long)w->durable);
            return msg;
        }
        if (w->away && w->cut != w->durable) {
            snprintf(msg, msglen, "worker %llu is away with cut %llu below its durable "
                     "version %llu", (unsigned long long)w->worker,
                     (unsigned long long)w->cut, (unsigned long long)w->durable);
            return msg;
        }
        size_t tl = strnlen(w->token, sizeof(w->token));
        if (tl == sizeof(w->token) || (tl > 0 && !dpr_finder_token_valid(w->token, tl))) {
            /* never show the token itself */
            snprintf(msg, msglen, "worker %llu has an invalid token",
                     (unsigned long long)w->worker);
            return msg;
        }
        if (i > 0 && st->workers[i - 1].worker >= w->worker) {
            snprintf(msg, msglen, "worker ids not strictly increasing (%llu after %llu)",
                     (unsigned long long)w->worker,
                     (unsigned long long)st->workers[i - 1].worker);
            return msg;
        }
    }
    if (st->nprefixes > DPR_FINDER_MAX_PREFIXES) {
        snprintf(msg, msglen, "%zu world-line prefixes (at most %d)", st->nprefixes,
                 DPR_FINDER_MAX_PREFIXES);
        return msg;
    }
    for (size_t i = 0; i < st->nprefixes; i++) {
        const dpr_finder_prefix *p = &st->prefixes[i];
        if (p->world_line == 0 || p->world_line >= st->world_line ||
            (i > 0 && p->world_line <= st->prefixes[i - 1].world_line)) {
            snprintf(msg, msglen, "ended world-line %llu out of order (current %llu)",
                     (unsigned long long)p->world_line, (unsigned long long)st->world_line);
            return msg;
        }
        if (p->n > 0 && !p->cut) {
            snprintf(msg, msglen, "prefix of world-line %llu without its cut",
                     (unsigned long long)p->world_line);
            return msg;
        }
        for (size_t j = 0; j < p->n; j++) {
            if (p->cut[j].version == 0 || (j > 0 && p->cut[j].worker <= p->cut[j - 1].worker)) {
                snprintf(msg, msglen,
                         "prefix of world-line %llu: entries not sorted by worker or "
                         "version 0 (worker %llu)",
                         (unsigned long long)p->world_line,
                         (unsigned long long)p->cut[j].worker);
                return msg;
            }
        }
    }
    return NULL;
}

/* Checks every domain (names valid and strictly rising, each content as
 * check_state); NULL if fine, else a description in msg. */
static const char *check_domains(const dpr_domains_state *st, char *msg, size_t msglen)
{
    char why[256];

    if (st->n > 0 && !st->domains) {
        snprintf(msg, msglen, "%zu domains without their records", st->n);
        return msg;
    }
    for (size_t i = 0; i < st->n; i++) {
        const dpr_domain_state *d = &st->domains[i];
        size_t len = strnlen(d->name, sizeof(d->name));
        if (!dpr_domain_valid(d->name, len)) {
            snprintf(msg, msglen, "domain %zu has an invalid name", i);
            return msg;
        }
        if (i > 0 && strcmp(st->domains[i - 1].name, d->name) >= 0) {
            snprintf(msg, msglen, "domain names not strictly increasing ('%s' after '%s')",
                     d->name, st->domains[i - 1].name);
            return msg;
        }
        if (check_state(&d->state, why, sizeof(why))) {
            snprintf(msg, msglen, "domain '%s': %s", d->name, why);
            return msg;
        }
    }
    return NULL;
}

/* A bounds-checked reader over the image (without its CRC). */
typedef struct cursor {
    const unsigned char *p;
    size_t left;
} cursor;

static int take_le64(cursor *c, uint64_t *v)
{
    if (c->left < 8)
        return -1;
    *v = dpr_get_le64(c->p);
    c->p += 8;
    c->left -= 8;
    return 0;
}

/* Walks one domain's content without allocating: 0 if its counts and
 * token lengths fit, else -1. */
static int skip_content(cursor *c, int format)
{
    uint64_t wl, gen, n, np, k;

    if (take_le64(c, &wl) < 0 || take_le64(c, &gen) < 0 || take_le64(c, &n) < 0)
        return -1;
    if (format == FORMAT_NO_TOKENS) {
        if (n > c->left / WORKER_LEN)
            return -1;
        c->p += n * WORKER_LEN;
        c->left -= n * WORKER_LEN;
    } else {
        size_t fl = format == FORMAT_AWAY ? FLAGS_LEN : 0;
        if (n > c->left / (WORKER_LEN + TOKEN_LEN_LEN + fl))
            return -1;
        for (uint64_t i = 0; i < n; i++) {
            size_t t;
            if (c->left < WORKER_LEN + TOKEN_LEN_LEN)
                return -1;
            t = c->p[WORKER_LEN];
            if (t > DPR_FINDER_TOKEN_MAX || c->left - WORKER_LEN - TOKEN_LEN_LEN < t + fl)
                return -1;
            c->p += WORKER_LEN + TOKEN_LEN_LEN + t + fl;
            c->left -= WORKER_LEN + TOKEN_LEN_LEN + t + fl;
        }
    }
    if (take_le64(c, &np) < 0 || np > DPR_FINDER_MAX_PREFIXES)
        return -1;
    for (uint64_t i = 0; i < np; i++) {
        if (take_le64(c, &wl) < 0 || take_le64(c, &k) < 0 || k > c->left / DEP_LEN)
            return -1;
        c->p += k * DEP_LEN;
        c->left -= k * DEP_LEN;
    }
    return 0;
}

/* Walks the whole structure without allocating: 0 if the counts fit the
 * length exactly, else -1 (truncated, extended or a damaged count, name or
 * token length). */
static int check_layout(const unsigned char *p, size_t body, int format)
{
    cursor c = { p + MAGIC_LEN + 1, body - (MAGIC_LEN + 1) };
    uint64_t gen, nd;

    if (format < FORMAT)
        return skip_content(&c, format) == 0 && c.left == 0 ? 0 : -1;
    if (take_le64(&c, &gen) < 0 || take_le64(&c, &nd) < 0 || nd > c.left / MIN_DOMAIN_LEN)
        return -1;
    for (uint64_t i = 0; i < nd; i++) {
        size_t len;
        if (c.left < NAME_LEN_LEN)
            return -1;
        len = c.p[0];
        if (len == 0 || len > DPR_DOMAIN_MAX || c.left - NAME_LEN_LEN < len)
            return -1;
        c.p += NAME_LEN_LEN + len;
        c.left -= NAME_LEN_LEN + len;
        if (skip_content(&c, format) < 0)
            return -1;
    }
    return c.left == 0 ? 0 : -1;
}

/* Reads one domain's content (its layout known to fit) into *out. Returns
 * 0, -ENOMEM, or -EBADMSG with why filled (a token with a bad byte). */
static int read_content(cursor *c, int format, dpr_finder_state *out, char *why, size_t whylen)
{
    dpr_finder_state st;
    uint64_t n = 0, np = 0;

    memset(&st, 0, sizeof(st));
    take_le64(c, &st.world_line);
    take_le64(c, &st.generation);
    take_le64(c, &n);
    if (n > 0 && !(st.workers = calloc((size_t)n, sizeof(*st.workers))))
        goto nomem;
    st.nworkers = (size_t)n;
    for (size_t i = 0; i < st.nworkers; i++) {
        take_le64(c, &st.workers[i].worker);
        take_le64(c, &st.workers[i].cut);
        take_le64(c, &st.workers[i].durable);
        if (format != FORMAT_NO_TOKENS) {
            size_t t = c->p[0]; /* <= DPR_FINDER_TOKEN_MAX: check_layout */
            if (t > 0 && !dpr_finder_token_valid((const char *)c->p + 1, t)) {
                /* (a NUL would cut it short in the state: look at the bytes) */
                snprintf(why, whylen, "worker %llu has an invalid token",
                         (unsigned long long)st.workers[i].worker);
                dpr_finder_state_free(&st);
                return -EBADMSG;
            }
            memcpy(st.workers[i].token, c->p + 1, t); /* calloc'd: terminated */
            c->p += 1 + t;
            c->left -= 1 + t;
        }
        if (format == FORMAT_AWAY) {
            unsigned flags = c->p[0]; /* there: check_layout */
            if (flags & ~(unsigned)FLAG_AWAY) {
                snprintf(why, whylen, "worker %llu has unknown flags 0x%02x",
                         (unsigned long long)st.workers[i].worker, flags);
                dpr_finder_state_free(&st);
                return -EBADMSG;
            }
            st.workers[i].away = (flags & FLAG_AWAY) != 0;
            c->p += FLAGS_LEN;
            c->left -= FLAGS_LEN;
        }
    }
    take_le64(c, &np);
    if (np > 0 && !(st.prefixes = calloc((size_t)np, sizeof(*st.prefixes))))
        goto nomem;
    for (size_t i = 0; i < np; i++) {
        dpr_finder_prefix *pf = &st.prefixes[i];
        uint64_t k = 0;
        st.nprefixes = i + 1; /* so that a failure frees what is there */
        take_le64(c, &pf->world_line);
        take_le64(c, &k);
        if (k > 0 && !(pf->cut = calloc((size_t)k, sizeof(*pf->cut))))
            goto nomem;
        pf->n = (size_t)k;
        for (size_t j = 0; j < pf->n; j++) {
            take_le64(c, &pf->cut[j].worker);
            take_le64(c, &pf->cut[j].version);
        }
    }
    *out = st;
    return 0;
nomem:
    dpr_finder_state_free(&st);
    return -ENOMEM;
}

int dpr_store_image_decode(const void *image, size_t len, const char *what,
                           dpr_domains_state *out, dpr_err *err)
{
    const unsigned char *p = image;
    dpr_domains_state st = { .domains = NULL };
    cursor c;
    char why[256], msg[400];
    uint64_t nd = 1;
    size_t body, min;
    int format, rc = 0;

    if (len >= MAGIC_LEN && memcmp(p, MAGIC, MAGIC_LEN) != 0)
        return dpr_err_set(err, -EBADMSG, "%s: not a dpr-finder state file (bad magic)",
                           what);
    format = len > MAGIC_LEN ? p[MAGIC_LEN] : FORMAT;
    min = format >= FORMAT ? MIN_FILE_LEN : MIN_FILE_LEN_ONE;
    if (len < min)
        return dpr_err_set(err, -EBADMSG,
                           "%s: corrupt state file: truncated (%zu bytes, a valid file has at "
                           "least %zu)", what, len, min);
    if (format < FORMAT_NO_TOKENS || format > FORMAT_AWAY)
        return dpr_err_set(err, -EBADMSG,
                           "%s: unsupported state file format %u (this finder reads formats "
                           "%d to %d)", what, p[MAGIC_LEN], FORMAT_NO_TOKENS, FORMAT_AWAY);
    body = len - CRC_LEN;
    if (check_layout(p, body, format) < 0)
        return dpr_err_set(err, -EBADMSG,
                           "%s: corrupt state file: length %zu does not match its content "
                           "(truncated or damaged)", what, len);
    if (dpr_crc32(p, body) != dpr_get_le32(p + body))
        return dpr_err_set(err, -EBADMSG, "%s: corrupt state file: checksum mismatch",
                           what);
    /* the layout is known to fit from here on */
    c.p = p + MAGIC_LEN + 1;
    c.left = body - MAGIC_LEN - 1;
    if (format >= FORMAT) {
        take_le64(&c, &st.generation);
        take_le64(&c, &nd);
    }
    if (nd > 0 && !(st.domains = calloc((size_t)nd, sizeof(*st.domains))))
        goto nomem;
    for (size_t i = 0; i < nd; i++) {
        dpr_domain_state *d = &st.domains[i];
        size_t nlen;
        if (format >= FORMAT) {
            nlen = c.p[0]; /* 1..DPR_DOMAIN_MAX: check_layout */
            if (!dpr_domain_valid((const char *)c.p + 1, nlen)) { /* (NULs included) */
                dpr_domains_state_free(&st);
                return dpr_err_set(err, -EBADMSG,
                                   "%s: corrupt state file: domain %zu has an invalid name",
                                   what, i);
            }
            memcpy(d->name, c.p + 1, nlen); /* calloc'd: terminated */
            c.p += 1 + nlen;
            c.left -= 1 + nlen;
        } else {
            memcpy(d->name, DPR_DOMAIN_DEFAULT, sizeof(DPR_DOMAIN_DEFAULT));
        }
        rc = read_content(&c, format, &d->state, why, sizeof(why));
        if (rc == -ENOMEM)
            goto nomem;
        st.n = i + 1;
        if (rc < 0) {
            if (format >= FORMAT && dpr_domain_valid(d->name, strlen(d->name)))
                snprintf(msg, sizeof(msg), "domain '%s': %s", d->name, why);
            else
                snprintf(msg, sizeof(msg), "%s", why);
            dpr_domains_state_free(&st);
            return dpr_err_set(err, -EBADMSG, "%s: corrupt state file: %s",
                               what, msg);
        }
    }
    if (format < FORMAT)
        st.generation = st.domains[0].state.generation;
    if (format >= FORMAT ? check_domains(&st, msg, sizeof(msg))
                         : check_state(&st.domains[0].state, msg, sizeof(msg))) {
        dpr_domains_state_free(&st);
        return dpr_err_set(err, -EBADMSG, "%s: corrupt state file: %s", what,
                           msg);
    }
    *out = st;
    return 0;
nomem:
    dpr_domains_state_free(&st);
    return dpr_err_set(err, -ENOMEM, "%s: out of memory loading the state",
                       what);
}

/* Adds one domain's size to *need; -EFBIG beyond MAX_FILE_LEN. */
static int content_size(const dpr_finder_state *st, int format, size_t *need)
{
    size_t n = *need + CONTENT_HEAD_LEN + 8;
    size_t fl = format == FORMAT_AWAY ? FLAGS_LEN : 0;

    if (st->nworkers > MAX_FILE_LEN / (WORKER_LEN + TOKEN_LEN_LEN))
        return -EFBIG;
    for (size_t i = 0; i < st->nworkers; i++) {
        n += WORKER_LEN + TOKEN_LEN_LEN + fl + strlen(st->workers[i].token);
        if (n > MAX_FILE_LEN)
            return -EFBIG;
    }
    for (size_t i = 0; i < st->nprefixes; i++) {
        if (st->prefixes[i].n > (MAX_FILE_LEN - n) / DEP_LEN)
            return -EFBIG;
        n += PREFIX_HEADER_LEN + st->prefixes[i].n * DEP_LEN;
        if (n > MAX_FILE_LEN)
            return -EFBIG;
    }
    *need = n;
    return 0;
}

/* Appends one domain's content (room reserved: cannot fail). */
static void put_content(dpr_buf *b, const dpr_finder_state *st, int format)
{
    dpr_buf_append_le64(b, st->world_line);
    dpr_buf_append_le64(b, st->generation);
    dpr_buf_append_le64(b, (uint64_t)st->nworkers);
    for (size_t i = 0; i < st->nworkers; i++) {
        dpr_buf_append_le64(b, st->workers[i].worker);
        dpr_buf_append_le64(b, st->workers[i].cut);
        dpr_buf_append_le64(b, st->workers[i].durable);
        size_t t = strlen(st->workers[i].token); /* <= DPR_FINDER_TOKEN_MAX: check_state */
        dpr_buf_append(b, &(unsigned char){ (unsigned char)t }, 1);
        dpr_buf_append(b, st->workers[i].token, t);
        if (format == FORMAT_AWAY)
            dpr_buf_append(b, &(unsigned char){ st->workers[i].away ? FLAG_AWAY : 0 }, 1);
    }
    dpr_buf_append_le64(b, (uint64_t)st->nprefixes);
    for (size_t i = 0; i < st->nprefixes; i++) {
        const dpr_finder_prefix *p = &st->prefixes[i];
        dpr_buf_append_le64(b, p->world_line);
        dpr_buf_append_le64(b, (uint64_t)p->n);
        for (size_t j = 0; j < p->n; j++) {
            dpr_buf_append_le64(b, p->cut[j].worker);
            dpr_buf_append_le64(b, p->cut[j].version);
        }
    }
}

/* The image of st into b (replacing its content). */
static int serialise(dpr_buf *b, const dpr_domains_state *st)
{
    unsigned char crc[CRC_LEN];
    size_t need = MIN_FILE_LEN;
    int format = FORMAT;
    uint32_t c;
    int rc;

    dpr_buf_reset(b);
    if (st->n > MAX_FILE_LEN / MIN_DOMAIN_LEN)
        return -EFBIG;
    for (size_t i = 0; i < st->n && format == FORMAT; i++)
        for (size_t j = 0; j < st->domains[i].state.nworkers; j++)
            if (st->domains[i].state.workers[j].away)
                format = FORMAT_AWAY;
    for (size_t i = 0; i < st->n; i++) {
        need += NAME_LEN_LEN + strlen(st->domains[i].name);
        rc = content_size(&st->domains[i].state, format, &need);
        if (rc < 0)
            return rc;
    }
    rc = dpr_buf_reserve(b, need);
    if (rc < 0)
        return rc;
    /* Cannot fail after the reservation. */
    dpr_buf_append(b, MAGIC, MAGIC_LEN);
    dpr_buf_append(b, &(unsigned char){ (unsigned char)format }, 1);
    dpr_buf_append_le64(b, st->generation);
    dpr_buf_append_le64(b, (uint64_t)st->n);
    for (size_t i = 0; i < st->n; i++) {
        size_t len = strlen(st->domains[i].name); /* 1..DPR_DOMAIN_MAX: check_domains */
        dpr_buf_append(b, &(unsigned char){ (unsigned char)len }, 1);
        dpr_buf_append(b, st->domains[i].name, len);
        put_content(b, &st->domains[i].state, format);
    }
    c = dpr_crc32((const unsigned char *)b->data, b->len);
    for (int i = 0; i < CRC_LEN; i++)
        crc[i] = (unsigned char)(c >> (8 * i));
    dpr_buf_append(b, crc, CRC_LEN);
    return 0;
}

int dpr_store_image_encode(const dpr_domains_state *st, dpr_buf *out, dpr_err *err)
{
    char why[400];
    int rc;

    if (check_domains(st, why, sizeof(why)))
        return dpr_err_set(err, -EINVAL, "refusing to save an inconsistent state: %s", why);
    rc = serialise(out, st);
    if (rc < 0)
        return dpr_err_set(err, rc, "cannot build the state image: %s", strerror(-rc));
    return 0;
}
