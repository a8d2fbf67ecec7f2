/*
 * fuzz_agent_rafthello.c - c-raft's connection handshake as a peer sends it
 * inside TLS (rafthello.h): any bytes give a length, 0 (not whole yet) or
 * -EINVAL with a reason, never a crash; what is accepted has a terminated
 * address and encodes back to the bytes it took.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rafthello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char address[AGENT_RAFT_HELLO_ADDRESS_MAX];
    dpr_err err = DPR_ERR_INIT;
    uint64_t id = 0;
    long used = agent_raft_hello_parse(data, size, &id, address, sizeof(address), &err);
    dpr_buf b;

    if (used < 0) {
        if (used != -EINVAL || !err.msg[0])
            abort();
        return 0;
    }
    if (used == 0)
        return 0;
    if ((size_t)used > size || memchr(address, '\0', sizeof(address)) == NULL)
        abort();
    /* the canonical form of what was read is at most as long (padding may
     * be longer than needed in what a peer sent) */
    dpr_buf_init(&b);
    if (agent_raft_hello_encode(id, address, &b) != 0 || b.len > (size_t)used ||
        memcmp(b.data, data, 16) != 0)
        abort();
    dpr_buf_free(&b);
    return 0;
}
