/* rafthello.c - c-raft's connection handshake (see rafthello.h). */
#include "rafthello.h"

#include <errno.h>
#include <string.h>

#include "common/err.h"

#define HEADER 24

int agent_raft_hello_encode(uint64_t id, const char *address, dpr_buf *out)
{
    size_t len = strlen(address);
    size_t field = (len + 1 + 7) / 8 * 8;
    static const char zeros[8];
    int rc;

    if (field > AGENT_RAFT_HELLO_ADDRESS_MAX)
        return -EINVAL;
    rc = dpr_buf_append_le64(out, AGENT_RAFT_HELLO_PROTOCOL);
    if (rc == 0)
        rc = dpr_buf_append_le64(out, id);
    if (rc == 0)
        rc = dpr_buf_append_le64(out, field);
    if (rc == 0)
        rc = dpr_buf_append(out, address, len);
    if (rc == 0)
        rc = dpr_buf_append(out, zeros, field - len); /* 1 to 8 */
    return rc;
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

long agent_raft_hello_parse(const void *p, size_t n, uint64_t *id, char *address, size_t cap,
                            dpr_err *err)
{
    const unsigned char *b = p;
    uint64_t proto, field;

    if (n < HEADER)
        return 0;
    proto = le64(b);
    field = le64(b + 16);
    if (proto != AGENT_RAFT_HELLO_PROTOCOL)
        return dpr_err_set(err, -EINVAL, "not a Raft handshake (protocol %llu)",
                           (unsigned long long)proto);
    if (field == 0 || field % 8 || field > AGENT_RAFT_HELLO_ADDRESS_MAX || field > cap)
        return dpr_err_set(err, -EINVAL, "not a Raft handshake (address field of %llu bytes)",
                           (unsigned long long)field);
    if (n < HEADER + field)
        return 0;
    if (memchr(b + HEADER, '\0', field) == NULL || b[HEADER] == '\0')
        return dpr_err_set(err, -EINVAL, "not a Raft handshake (the address is %s)",
                           b[HEADER] ? "not terminated" : "empty");
    *id = le64(b + 8);
    memcpy(address, b + HEADER, field);
    return (long)(HEADER + field);
}
