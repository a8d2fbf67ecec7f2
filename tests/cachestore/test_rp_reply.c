/* test_rp_reply.c - dpr-redis' scan of Redis replies (cachestore/redis/rp_reply.c). */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "rp_reply.h"

static ssize_t len_of(const char *s)
{
    return rp_reply_len(s, strlen(s));
}

TEST(complete_replies)
{
    CHECK_EQ_INT(len_of("+OK\r\n"), 5);
    CHECK_EQ_INT(len_of("-ERR no\r\n"), 9);
    CHECK_EQ_INT(len_of(":-12\r\n"), 6);
    CHECK_EQ_INT(len_of("$3\r\nabc\r\n"), 9);
    CHECK_EQ_INT(len_of("$0\r\n\r\n"), 6);
    CHECK_EQ_INT(len_of("$-1\r\n"), 5);
    CHECK_EQ_INT(len_of("*-1\r\n"), 5);
    CHECK_EQ_INT(len_of("*0\r\n"), 4);
    CHECK_EQ_INT(len_of("*2\r\n$1\r\na\r\n*1\r\n:1\r\n"), 19);
    /* one reply of a pipeline: the next is not counted */
    CHECK_EQ_INT(len_of("+OK\r\n+PONG\r\n"), 5);
    /* binary data with CR LF inside a bulk string */
    CHECK_EQ_INT(rp_reply_len("$4\r\n\r\n\r\n\r\n", 10), 10);
}

TEST(incomplete_replies)
{
    const char *full = "*2\r\n$5\r\nhello\r\n*2\r\n:1\r\n$-1\r\n";
    size_t n = strlen(full);
    CHECK_EQ_INT(rp_reply_len(full, n), (ssize_t)n);
    for (size_t cut = 0; cut < n; cut++)
        CHECK_EQ_INT(rp_reply_len(full, cut), 0);
}

TEST(malformed_replies)
{
    CHECK_EQ_INT(len_of("?x\r\n"), -EPROTO);
    CHECK_EQ_INT(len_of(":1x\r\n"), -EPROTO);
    CHECK_EQ_INT(len_of(":\r\n"), -EPROTO);
    CHECK_EQ_INT(len_of("$-2\r\n"), -EPROTO);
    CHECK_EQ_INT(len_of("$3\r\nabcd\r\n"), -EPROTO);
    CHECK_EQ_INT(len_of("*-5\r\n"), -EPROTO);
    CHECK_EQ_INT(len_of("*99999999999999999999\r\n"), -EPROTO);
    CHECK_EQ_INT(len_of("*3000000000\r\n"), -EPROTO);
    CHECK_EQ_INT(len_of("+OK\rX"), -EPROTO);
}

int main(void)
{
    RUN(complete_replies);
    RUN(incomplete_replies);
    RUN(malformed_replies);
    return check_summary("test_rp_reply");
}
