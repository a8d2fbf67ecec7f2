/* test_agent_rafthello.c - c-raft's connection handshake (rafthello.h). */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "common/err.h"
#include "rafthello.h"

TEST(round_trip_and_raft_bytes_after_it)
{
    char addr[AGENT_RAFT_HELLO_ADDRESS_MAX];
    dpr_err err = DPR_ERR_INIT;
    uint64_t id = 0;
    dpr_buf b;

    dpr_buf_init(&b);
    CHECK_EQ_INT(agent_raft_hello_encode(0xe14fb6be7c82bcc5ULL, "127.0.0.2:7400", &b), 0);
    /* 24 + "127.0.0.2:7400\0" padded to 16, as c-raft's TCP transport */
    CHECK_EQ_INT(b.len, 40);
    CHECK(b.data[0] == 1 && b.data[16] == 16);
    CHECK(dpr_buf_append(&b, "RAFT", 4) == 0);
    for (size_t n = 0; n < 40; n++)
        CHECK_EQ_INT(agent_raft_hello_parse(b.data, n, &id, addr, sizeof(addr), &err), 0);
    CHECK_EQ_INT(agent_raft_hello_parse(b.data, b.len, &id, addr, sizeof(addr), &err), 40);
    CHECK(id == 0xe14fb6be7c82bcc5ULL);
    CHECK(strcmp(addr, "127.0.0.2:7400") == 0);
    dpr_buf_free(&b);
    /* an address of 8 bytes needs a second word for its NUL */
    dpr_buf_init(&b);
    CHECK_EQ_INT(agent_raft_hello_encode(1, "1.2.3.4:", &b), 0);
    CHECK_EQ_INT(b.len, 40);
    dpr_buf_free(&b);
    /* 255 characters fit (256 with the NUL), 256 do not */
    memset(addr, 'a', sizeof(addr) - 1);
    addr[sizeof(addr) - 1] = '\0';
    dpr_buf_init(&b);
    CHECK_EQ_INT(agent_raft_hello_encode(1, addr, &b), 0);
    CHECK_EQ_INT(agent_raft_hello_parse(b.data, b.len, &id, addr, sizeof(addr), &err),
                 24 + 256);
    dpr_buf_free(&b);
    {
        char longer[300];

        memset(longer, 'a', 256);
        longer[256] = '\0';
        dpr_buf_init(&b);
        CHECK_EQ_INT(agent_raft_hello_encode(1, longer, &b), -EINVAL);
        dpr_buf_free(&b);
    }
}

static const char *refusal(const char *bytes, size_t n)
{
    static dpr_err err;
    char addr[AGENT_RAFT_HELLO_ADDRESS_MAX];
    uint64_t id;

    dpr_err_clear(&err);
    if (agent_raft_hello_parse(bytes, n, &id, addr, sizeof(addr), &err) != -EINVAL)
        return "(accepted)";
    return err.msg;
}

TEST(refusals)
{
    /* protocol 2 */
    CHECK(strstr(refusal("\2\0\0\0\0\0\0\0" "\7\0\0\0\0\0\0\0" "\10\0\0\0\0\0\0\0" "a:1\0\0\0\0\0",
                         32), "protocol 2"));
    /* an address field of 0, 7, 4096 bytes */
    CHECK(strstr(refusal("\1\0\0\0\0\0\0\0" "\7\0\0\0\0\0\0\0" "\0\0\0\0\0\0\0\0", 24),
                  "address field of 0 bytes"));
    CHECK(strstr(refusal("\1\0\0\0\0\0\0\0" "\7\0\0\0\0\0\0\0" "\7\0\0\0\0\0\0\0", 24),
                  "address field of 7 bytes"));
    CHECK(strstr(refusal("\1\0\0\0\0\0\0\0" "\7\0\0\0\0\0\0\0" "\0\20\0\0\0\0\0\0", 24),
                  "address field of 4096 bytes"));
    /* not terminated, empty */
    CHECK(strstr(refusal("\1\0\0\0\0\0\0\0" "\7\0\0\0\0\0\0\0" "\10\0\0\0\0\0\0\0" "abcdefgh",
                         32), "not terminated"));
    CHECK(strstr(refusal("\1\0\0\0\0\0\0\0" "\7\0\0\0\0\0\0\0" "\10\0\0\0\0\0\0\0"
                         "\0\0\0\0\0\0\0\0", 32), "empty"));
    /* plain text (an HTTP request) is not a handshake */
    CHECK(strstr(refusal("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27), "protocol"));
}

int main(void)
{
    RUN(round_trip_and_raft_bytes_after_it);
    RUN(refusals);
    return check_summary("test_agent_rafthello");
}
