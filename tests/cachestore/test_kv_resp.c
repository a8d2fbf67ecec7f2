/* test_kv_resp.c - dpr-kv's RESP request parser, its replies (written with
 * common/resp.h) and keyspace commands. Links dpr-kv's modules
 * (libdprkv.a). */
#include "check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/resp.h"
#include "kv_batchops.h"
#include "kv_cmd.h"
#include "kv_dict.h"
#include "kv_resp.h"

static int arg_eq(const kv_arg *a, const char *s)
{
    return a->n == strlen(s) && memcmp(a->p, s, a->n) == 0;
}

TEST(multibulk_whole_and_pipelined)
{
    kv_parser p;
    const char in[] = "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*3\r\n$3\r\nSET\r\n$0\r\n\r\n$2\r\n\r\n\r\n";
    size_t argc = 0;
    kv_arg *argv = NULL;
    const char *err = NULL;
    kv_parser_init(&p, 1 << 20, 1024);
    ssize_t n = kv_parse(&p, in, sizeof(in) - 1, &argc, &argv, &err);
    CHECK_EQ_INT(n, 20);
    CHECK_EQ_U64(argc, 2);
    CHECK(arg_eq(&argv[0], "GET") && arg_eq(&argv[1], "a"));
    ssize_t m = kv_parse(&p, in + n, sizeof(in) - 1 - (size_t)n, &argc, &argv, &err);
    CHECK_EQ_INT(m, (ssize_t)(sizeof(in) - 1) - n);
    CHECK_EQ_U64(argc, 3);
    CHECK(arg_eq(&argv[0], "SET") && argv[1].n == 0 && arg_eq(&argv[2], "\r\n"));
    kv_parser_free(&p);
}

/* Every prefix is incomplete; the whole parses the same as at once. */
TEST(multibulk_byte_by_byte)
{
    kv_parser p;
    const char in[] = "*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$11\r\nworld\0\r\n!!!\r\n";
    size_t len = sizeof(in) - 1, argc = 0;
    kv_arg *argv = NULL;
    const char *err = NULL;
    kv_parser_init(&p, 1 << 20, 1024);
    for (size_t i = 1; i < len; i++)
        CHECK_EQ_INT(kv_parse(&p, in, i, &argc, &argv, &err), 0);
    CHECK_EQ_INT(kv_parse(&p, in, len, &argc, &argv, &err), (ssize_t)len);
    CHECK_EQ_U64(argc, 3);
    CHECK(argv[2].n == 11 && memcmp(argv[2].p, "world\0\r\n!!!", 11) == 0);
    kv_parser_free(&p);
}

TEST(inline_and_empty)
{
    kv_parser p;
    size_t argc = 9;
    kv_arg *argv = NULL;
    const char *err = NULL;
    kv_parser_init(&p, 1 << 20, 1024);
    CHECK_EQ_INT(kv_parse(&p, "PING", 4, &argc, &argv, &err), 0);
    CHECK_EQ_INT(kv_parse(&p, "  SET\tk  v \r\nX", 14, &argc, &argv, &err), 13);
    CHECK_EQ_U64(argc, 3);
    CHECK(arg_eq(&argv[0], "SET") && arg_eq(&argv[1], "k") && arg_eq(&argv[2], "v"));
    CHECK_EQ_INT(kv_parse(&p, "\n", 1, &argc, &argv, &err), 1);
    CHECK_EQ_U64(argc, 0);
    CHECK_EQ_INT(kv_parse(&p, "*0\r\n", 4, &argc, &argv, &err), 4);
    CHECK_EQ_U64(argc, 0);
    CHECK_EQ_INT(kv_parse(&p, "*-1\r\n", 5, &argc, &argv, &err), 5);
    CHECK_EQ_U64(argc, 0);
    kv_parser_free(&p);
}

static const char *parse_error(const char *in, size_t len, size_t max_request, size_t max_args)
{
    kv_parser p;
    size_t argc;
    kv_arg *argv;
    const char *err = "no error";
    kv_parser_init(&p, max_request, max_args);
    ssize_t n = kv_parse(&p, in, len, &argc, &argv, &err);
    kv_parser_free(&p);
    return n == -EPROTO ? err : "no error";
}

#define ERR_HAS(in, word) \
    CHECK(strstr(parse_error(in, sizeof(in) - 1, 1 << 20, 1024), word) != NULL)

TEST(malformed)
{
    ERR_HAS("*x\r\n", "invalid multibulk length");
    ERR_HAS("*1x\r\n", "invalid multibulk length");
    ERR_HAS("*01\r\n", "invalid multibulk length");
    ERR_HAS("*1\r\n+OK\r\n", "expected '$'");
    ERR_HAS("*1\r\n$-1\r\n", "invalid bulk length");
    ERR_HAS("*1\r\n$abc\r\n", "invalid bulk length");
    ERR_HAS("*1\r\n$3\rX", "invalid bulk length");
    ERR_HAS("*1\r\n$3\r\nabcde", "not followed by CRLF");
    ERR_HAS("*1\r\n$000000000000000000000000000000000000000000000", "invalid bulk length");
    ERR_HAS("*2000\r\n", "invalid multibulk length"); /* above max_args */
    /* limits */
    CHECK(strstr(parse_error("*1\r\n$100\r\n", 11, 64, 10), "maximum request size"));
    CHECK(strstr(parse_error("*3\r\n$20\r\n01234567890123456789\r\n$20\r\n0123456789012345678"
                             "9\r\n",
                             62, 50, 10),
                 "maximum request size"));
    static char inl[KV_INLINE_MAX + 10];
    memset(inl, 'a', sizeof(inl));
    CHECK(strstr(parse_error(inl, sizeof(inl), 1 << 20, 10), "too big inline"));
}

TEST(replies)
{
    dpr_buf b = DPR_BUF_INIT;
    dpr_resp_int(&b, -9223372036854775807LL - 1);
    dpr_resp_bulk(&b, "a\r\nb", 4);
    dpr_resp_nil(&b);
    dpr_resp_array(&b, 3);
    dpr_resp_error(&b, "ERR bad\r\nthing");
    dpr_resp_status(&b, "OK");
    const char want[] = ":-9223372036854775808\r\n$4\r\na\r\nb\r\n$-1\r\n*3\r\n"
                        "-ERR bad  thing\r\n+OK\r\n";
    CHECK_EQ_U64(b.len, sizeof(want) - 1);
    CHECK(b.len == sizeof(want) - 1 && memcmp(b.data, want, b.len) == 0);
    CHECK(!dpr_buf_failed(&b));
    dpr_buf_free(&b);
}

static const char *run(kv_dict *d, dpr_buf *out, int argc, const char **args)
{
    kv_arg argv[16];
    kv_cmd_ctx c = {d, out, 0};
    for (int i = 0; i < argc; i++) {
        argv[i].p = args[i];
        argv[i].n = strlen(args[i]);
    }
    out->len = 0;
    dpr_buf_append(out, "", 1); /* so data is never NULL */
    out->len = 0;
    const kv_command *cmd = kv_command_lookup(argv[0].p, argv[0].n);
    if (!cmd)
        kv_reply_unknown_command(out, (size_t)argc, argv);
    else if (!kv_command_arity_ok(cmd, (size_t)argc))
        kv_reply_wrong_arity(out, cmd);
    else if (cmd->fn)
        cmd->fn(&c, (size_t)argc, argv);
    dpr_buf_append(out, "", 1);
    return out->data;
}

#define RUN_CMD(want, ...)                                                                  \
    do {                                                                                    \
        const char *args_[] = {__VA_ARGS__};                                                \
        const char *got_ = run(&d, &out, (int)(sizeof(args_) / sizeof(args_[0])), args_); \
        if (strcmp(got_, want) != 0) {                                                      \
            fprintf(stderr, "  %s:%d: got %s\n", __FILE__, __LINE__, got_);                 \
            check_cur_failed = 1;                                                           \
        }                                                                                   \
    } while (0)

TEST(commands)
{
    static const uint8_t seed[16] = {0};
    kv_dict d;
    dpr_buf out = DPR_BUF_INIT;
    kv_dict_init(&d, seed);
    RUN_CMD("+OK\r\n", "set", "k", "v");
    RUN_CMD("$1\r\nv\r\n", "GET", "k");
    RUN_CMD("$-1\r\n", "SET", "k", "w", "NX");
    RUN_CMD("-ERR syntax error\r\n", "SET", "k", "w", "NX", "XX");
    RUN_CMD(":1\r\n", "INCR", "n");
    RUN_CMD(":-9223372036854775807\r\n", "INCRBY", "n", "-9223372036854775808");
    RUN_CMD("-ERR increment or decrement would overflow\r\n", "DECRBY", "n", "2");
    RUN_CMD("-ERR decrement would overflow\r\n", "DECRBY", "n", "-9223372036854775808");
    RUN_CMD("-ERR value is not an integer or out of range\r\n", "INCR", "k");
    RUN_CMD(":3\r\n", "APPEND", "k", "xy");
    RUN_CMD("*2\r\n$3\r\nvxy\r\n$-1\r\n", "MGET", "k", "nope");
    RUN_CMD("-ERR wrong number of arguments for 'mset' command\r\n", "MSET", "a", "1", "b");
    RUN_CMD("-ERR wrong number of arguments for 'get' command\r\n", "GET");
    RUN_CMD("-ERR unknown command 'nope', with args beginning with: 'a' 'b' \r\n", "nope", "a",
            "b");
    RUN_CMD(":2\r\n", "DEL", "k", "n", "k");
    RUN_CMD(":0\r\n", "DBSIZE");
    dpr_buf_free(&out);
    kv_dict_free(&d);
}

/* Integers follow Redis' string2ll: one spelling per number, within 64 bits. */
TEST(integer_arguments)
{
    static const uint8_t seed[16] = {0};
    static const char *const bad[] = {
        "",
        "-",
        "+1",
        " 1",
        "1 ",
        "01",
        "-0",
        "-01",
        "00",
        "1a",
        "0x10",
        "1.5",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "000000000000000000001",
        "123456789012345678901",
    };
    kv_dict d;
    dpr_buf out = DPR_BUF_INIT;
    kv_dict_init(&d, seed);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        RUN_CMD("-ERR value is not an integer or out of range\r\n", "INCRBY", "n", bad[i]);
        RUN_CMD("-ERR value is not an integer or out of range\r\n", "DECRBY", "n", bad[i]);
    }
    RUN_CMD("$-1\r\n", "GET", "n"); /* nothing was written */
    RUN_CMD(":0\r\n", "INCRBY", "n", "0");
    RUN_CMD(":9223372036854775807\r\n", "INCRBY", "n", "9223372036854775807");
    RUN_CMD(":-1\r\n", "INCRBY", "n", "-9223372036854775808");
    RUN_CMD(":-11\r\n", "DECRBY", "n", "10");
    RUN_CMD("+OK\r\n", "SET", "v", "-0");
    RUN_CMD("-ERR value is not an integer or out of range\r\n", "INCR", "v");
    RUN_CMD("+OK\r\n", "SET", "v", "-42");
    RUN_CMD(":-41\r\n", "INCR", "v");
    dpr_buf_free(&out);
    kv_dict_free(&d);
}

/* A batch's stored operations (kv_batchops.h) read back as written, an
 * empty argument and an operation of no arguments included. */
TEST(batchops_round_trip)
{
    const kv_arg set[3] = {{"SET", 3}, {"k", 1}, {"", 0}}, none[1] = {{NULL, 0}};
    dpr_buf b = DPR_BUF_INIT;
    kv_arg av[3];
    const char *p;

    kv_batchops_put(&b, 3, set);
    kv_batchops_put(&b, 0, none);
    CHECK(!dpr_buf_failed(&b));
    CHECK_EQ_INT((int)b.len, (int)(kv_batchops_size(3, set) + kv_batchops_size(0, none)));
    CHECK_EQ_INT((int)kv_batchops_argc(b.data), 3);
    p = kv_batchops_args(b.data, av);
    CHECK(av[0].n == 3 && !memcmp(av[0].p, "SET", 3) && av[1].n == 1 && av[1].p[0] == 'k' &&
          av[2].n == 0);
    CHECK_EQ_INT((int)kv_batchops_argc(p), 0);
    CHECK(kv_batchops_args(p, av) == b.data + b.len);
    dpr_buf_free(&b);
}

int main(void)
{
    RUN(multibulk_whole_and_pipelined);
    RUN(batchops_round_trip);
    RUN(multibulk_byte_by_byte);
    RUN(inline_and_empty);
    RUN(malformed);
    RUN(replies);
    RUN(commands);
    RUN(integer_arguments);
    return check_summary("test_kv_resp");
}
