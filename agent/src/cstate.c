/* cstate.c - the cluster's replicated state and its images (see cstate.h). */
#include "cstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/err.h"

#define ENTRY_MAGIC "DPRE"
#define SNAP_MAGIC "DPRS"
#define MAGIC_LEN 4
#define FORMAT 1
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

/* Checks magic, format and checksum of an image of at least head bytes
 * whose checksum ends it at len. */
static int check_frame(const unsigned char *p, size_t len, const char *magic, size_t head,
                       const char *what, dpr_err *err)
{
    if (len < head + CRC_LEN)
        return dpr_err_set(err, -EBADMSG, "%s: truncated (%zu bytes)", what, len);
    if (memcmp(p, magic, MAGIC_LEN) != 0)
        return dpr_err_set(err, -EBADMSG, "%s: bad magic", what);
    if (dpr_crc32(p, len - CRC_LEN) != dpr_get_le32(p + len - CRC_LEN))
        return dpr_err_set(err, -EBADMSG, "%s: checksum mismatch", what);
    if (p[MAGIC_LEN] != FORMAT)
        return dpr_err_set(err, -EPROTONOSUPPORT,
                           "%s: format %u (this agent reads format %d: a newer agent wrote "
                           "it; upgrade this one)", what, p[MAGIC_LEN], FORMAT);
    return 0;
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
    rc = check_frame(p, ENTRY_HEAD + (size_t)plen + CRC_LEN, ENTRY_MAGIC, ENTRY_HEAD,
                     "raft entry", err);
    if (rc < 0)
        return rc;
    switch (p[MAGIC_LEN + 1]) {
    case AGENT_CSTATE_ENTRY_FINDER:
        if (plen == 0)
            return dpr_err_set(err, -EBADMSG, "raft entry: an empty finder state");
        rc = set_finder(cs, p + ENTRY_HEAD, (size_t)plen);
        break;
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
    unsigned char format = FORMAT;

    dpr_buf_reset(out);
    if (dpr_buf_reserve(out, SNAP_HEAD + cs->finder_len + CRC_LEN) < 0)
        return -ENOMEM;
    dpr_buf_append(out, SNAP_MAGIC, MAGIC_LEN);
    dpr_buf_append(out, &format, 1);
    dpr_buf_append_le64(out, (uint64_t)cs->finder_len);
    dpr_buf_append(out, cs->finder, cs->finder_len);
    return append_crc(out);
}

int agent_cstate_restore(agent_cstate *cs, const void *image, size_t len, dpr_err *err)
{
    const unsigned char *p = image;
    uint64_t flen;
    int rc;

    rc = check_frame(p, len, SNAP_MAGIC, SNAP_HEAD, "raft snapshot", err);
    if (rc < 0)
        return rc;
    flen = dpr_get_le64(p + MAGIC_LEN + 1);
    if (flen != len - SNAP_HEAD - CRC_LEN)
        return dpr_err_set(err, -EBADMSG, "raft snapshot: finder state length %llu does not "
                           "match its size %zu", (unsigned long long)flen, len);
    rc = set_finder(cs, p + SNAP_HEAD, (size_t)flen);
    if (rc < 0)
        return dpr_err_set(err, rc, "out of memory restoring a raft snapshot");
    cs->changes++;
    return 0;
}
