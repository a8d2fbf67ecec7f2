/* test_common.c - the base layer (common/): numbers, buffer, RESP writer,
 * addresses, files, locks, errors. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common/addr.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/num.h"
#include "common/resp.h"

/* b holds exactly the string literal s (which may contain NUL bytes) */
#define CHECK_STR(b, s) CHECK((b).len == sizeof(s) - 1 && memcmp((b).data, (s), (b).len) == 0)

TEST(fmt_numbers)
{
    char p[24];

    CHECK(dpr_fmt_u64(p, 0) == 1 && p[0] == '0');
    CHECK(dpr_fmt_u64(p, UINT64_MAX) == 20 && memcmp(p, "18446744073709551615", 20) == 0);
    CHECK(dpr_fmt_i64(p, INT64_MIN) == 20 && memcmp(p, "-9223372036854775808", 20) == 0);
    CHECK(dpr_fmt_i64(p, -7) == 2 && memcmp(p, "-7", 2) == 0);
}

TEST(parse_unsigned)
{
    uint64_t v = 99;

    CHECK(dpr_parse_u64("0", 1, 0, 10, &v) == 0 && v == 0);
    CHECK(dpr_parse_u64("18446744073709551615", 20, 0, UINT64_MAX, &v) == 0 && v == UINT64_MAX);
    CHECK_EQ_INT(dpr_parse_u64("18446744073709551616", 20, 0, UINT64_MAX, &v), -ERANGE);
    CHECK_EQ_INT(dpr_parse_u64("65536", 5, 1, 65535, &v), -ERANGE);
    CHECK_EQ_INT(dpr_parse_u64("0", 1, 1, 65535, &v), -ERANGE);
    CHECK_EQ_INT(dpr_parse_u64("", 0, 0, 9, &v), -EINVAL);
    CHECK_EQ_INT(dpr_parse_u64("01", 2, 0, 9, &v), -EINVAL);
    CHECK_EQ_INT(dpr_parse_u64("+1", 2, 0, 9, &v), -EINVAL);
    CHECK_EQ_INT(dpr_parse_u64(" 1", 2, 0, 9, &v), -EINVAL);
    CHECK_EQ_INT(dpr_parse_u64("-1", 2, 0, 9, &v), -EINVAL);
    CHECK_EQ_INT(dpr_parse_u64("1x", 2, 0, 9, &v), -EINVAL);
    CHECK(dpr_parse_u64("12", 1, 0, 9, &v) == 0 && v == 1); /* length, not NUL */
    CHECK(dpr_parse_u64_str("4096", 64, 1 << 30, &v) == 0 && v == 4096);
    CHECK_EQ_INT(dpr_parse_u64_str(NULL, 0, 1, &v), -EINVAL);
}

TEST(parse_signed_like_redis)
{
    int64_t v = 1;

    CHECK(dpr_parse_i64("-9223372036854775808", 20, &v) == 0 && v == INT64_MIN);
    CHECK(dpr_parse_i64("9223372036854775807", 19, &v) == 0 && v == INT64_MAX);
    CHECK_EQ_INT(dpr_parse_i64("9223372036854775808", 19, &v), -ERANGE);
    CHECK_EQ_INT(dpr_parse_i64("-9223372036854775809", 20, &v), -ERANGE);
    CHECK(dpr_parse_i64("0", 1, &v) == 0 && v == 0);
    CHECK_EQ_INT(dpr_parse_i64("-0", 2, &v), -EINVAL);
    CHECK_EQ_INT(dpr_parse_i64("-", 1, &v), -EINVAL);
    CHECK_EQ_INT(dpr_parse_i64("007", 3, &v), -EINVAL);
    CHECK(dpr_parse_i64("-42", 3, &v) == 0 && v == -42);
}

TEST(buffer)
{
    dpr_buf b = DPR_BUF_INIT;

    CHECK(dpr_buf_append(&b, "ab", 2) == 0);
    CHECK(dpr_buf_append_str(&b, "cd") == 0);
    CHECK(dpr_buf_append(&b, "1234567890123<7:x>", 18) == 0);
    CHECK_STR(b, "abcd1234567890123<7:x>");
    dpr_buf_consume(&b, 4);
    CHECK_STR(b, "1234567890123<7:x>");
    dpr_buf_reset(&b);
    CHECK(dpr_buf_append_le64(&b, 0x0102030405060708ull) == 0);
    CHECK(b.len == 8 && b.data[0] == 8 && b.data[7] == 1);
    /* a request that cannot be met fails, sets the flag, keeps the content */
    CHECK_EQ_INT(dpr_buf_reserve(&b, SIZE_MAX - 4), -ENOMEM);
    CHECK(dpr_buf_failed(&b) && b.len == 8);
    dpr_buf_reset(&b);
    CHECK(!dpr_buf_failed(&b));
    for (int i = 0; i < 100000; i++)
        dpr_buf_append(&b, "0123456789", 10);
    CHECK(b.len == 1000000 && memcmp(b.data + 999990, "0123456789", 10) == 0);
    size_t len;
    char *p = dpr_buf_steal(&b, &len);
    CHECK(len == 1000000 && b.data == NULL && b.len == 0);
    free(p);
    dpr_buf_free(&b);
}

TEST(resp_writer)
{
    dpr_buf b = DPR_BUF_INIT;
    const char *argv[] = { "SET", "key", "" };
    size_t lens[] = { 3, 3, 0 };

    dpr_resp_status(&b, "OK");
    dpr_resp_error(&b, "ERR bad\r\nthing");
    dpr_resp_int(&b, -5);
    dpr_resp_uint(&b, UINT64_MAX);
    dpr_resp_bulk(&b, "a\0b", 3);
    dpr_resp_bulk_u64(&b, 42);
    dpr_resp_nil(&b);
    dpr_resp_array(&b, 2);
    CHECK_STR(b, "+OK\r\n-ERR bad  thing\r\n:-5\r\n:18446744073709551615\r\n$3\r\na\0b\r\n"
                 "$2\r\n42\r\n$-1\r\n*2\r\n");
    dpr_buf_reset(&b);
    dpr_resp_command(&b, 3, argv, lens);
    CHECK_STR(b, "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n");
    CHECK(dpr_resp_command_size(3, lens) == b.len);
    dpr_buf_reset(&b);
    dpr_resp_command(&b, 3, argv, NULL);
    CHECK(dpr_resp_command_size(3, lens) == b.len);
    CHECK(!dpr_buf_failed(&b));
    dpr_buf_free(&b);
}

/* With dpr_resp_command_size() bytes reserved, dpr_resp_command writes
 * exactly there and never reallocates (libdpr reserves before it commits to
 * a batch); lengths cross digit boundaries. */
TEST(resp_command_in_reserved_room)
{
    static char big[100001];
    size_t sizes[] = { 0, 1, 9, 10, 99, 100, 999, 1000, 100000 };

    memset(big, 'x', sizeof(big));
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        for (int argc = 1; argc <= 12; argc += 11) {
            const char *argv[12];
            size_t lens[12];
            dpr_buf b = DPR_BUF_INIT;

            for (int i = 0; i < argc; i++) {
                argv[i] = big;
                lens[i] = i ? sizes[(k + (size_t)i) % 9] : sizes[k];
            }
            size_t n = dpr_resp_command_size(argc, lens);
            CHECK(dpr_buf_reserve(&b, n) == 0);
            b.cap = b.len + n; /* exactly the room asked for: any reserve beyond it grows cap */
            const char *data = b.data;
            dpr_resp_command(&b, argc, argv, lens);
            CHECK(!dpr_buf_failed(&b));
            CHECK(b.data == data && b.cap == n && b.len == n);
            CHECK(b.len >= 4 && b.data[0] == '*' && !memcmp(b.data + b.len - 2, "\r\n", 2));
            dpr_buf_free(&b);
        }
    }
}

TEST(hostport)
{
    dpr_hostport hp;
    dpr_err err;

    CHECK(dpr_hostport_parse("10.0.0.5:7400", 0, &hp, &err) == 0);
    CHECK(strcmp(hp.host, "10.0.0.5") == 0 && hp.port == 7400);
    CHECK(dpr_hostport_parse("[fe80::1]:1", 0, &hp, &err) == 0);
    CHECK(strcmp(hp.host, "fe80::1") == 0 && hp.port == 1);
    CHECK(dpr_hostport_parse("node1.lan:65535", 0, &hp, &err) == 0 && hp.port == 65535);
    CHECK(dpr_hostport_parse("*:0", DPR_HOSTPORT_ANY | DPR_HOSTPORT_PORT0, &hp, &err) == 0);
    CHECK(hp.host[0] == '\0' && hp.port == 0);
    CHECK(dpr_hostport_parse(":7000", DPR_HOSTPORT_ANY, &hp, &err) == 0 && hp.host[0] == 0);
    CHECK_EQ_INT(dpr_hostport_parse(":7000", 0, &hp, &err), -EINVAL);
    CHECK(strstr(err.msg, "host") != NULL);
    CHECK_EQ_INT(dpr_hostport_parse("h:0", 0, &hp, &err), -EINVAL);
    CHECK(strstr(err.msg, "1..65535") != NULL && err.code == -EINVAL);
    CHECK_EQ_INT(dpr_hostport_parse("h:65536", 0, &hp, &err), -EINVAL);
    CHECK_EQ_INT(dpr_hostport_parse("h:", 0, &hp, &err), -EINVAL);
    CHECK_EQ_INT(dpr_hostport_parse("h:+1", 0, &hp, &err), -EINVAL);
    CHECK_EQ_INT(dpr_hostport_parse("h", 0, &hp, &err), -EINVAL);
    CHECK_EQ_INT(dpr_hostport_parse("fe80::1:7000", 0, &hp, &err), -EINVAL);
    CHECK(strstr(err.msg, "brackets") != NULL);
    CHECK_EQ_INT(dpr_hostport_parse("[fe80::1:7000", 0, &hp, &err), -EINVAL);
    CHECK_EQ_INT(dpr_hostport_parse("[]:7000", 0, &hp, &err), -EINVAL);
    /* found by fuzz_common_parse: brackets hold an IPv6 literal only */
    CHECK_EQ_INT(dpr_hostport_parse("[[]:0", DPR_HOSTPORT_PORT0, &hp, &err), -EINVAL);
    CHECK_EQ_INT(dpr_hostport_parse("[*]:7000", DPR_HOSTPORT_ANY, &hp, &err), -EINVAL);
    CHECK_EQ_INT(dpr_hostport_parse("[node1]:7000", 0, &hp, &err), -EINVAL);
    CHECK_EQ_INT(dpr_hostport_parse("[[::1]:7000", 0, &hp, &err), -EINVAL);
    CHECK_EQ_INT(dpr_hostport_parse("", 0, &hp, &err), -EINVAL);
    CHECK_EQ_INT(dpr_hostport_parse_n("a\0b:1", 5, 0, &hp, NULL), -EINVAL);
    char longname[400];
    memset(longname, 'a', 300);
    strcpy(longname + 300, ":80");
    CHECK_EQ_INT(dpr_hostport_parse(longname, 0, &hp, &err), -EINVAL);
    CHECK(strstr(err.msg, "too long") != NULL);
}

TEST(resolve_and_format)
{
    dpr_hostport hp = { "127.0.0.1", 8080 };
    struct sockaddr_storage ss;
    socklen_t len;
    char text[DPR_ADDR_STR_MAX];

    CHECK(dpr_hostport_resolve(&hp, false, &ss, &len, NULL) == 0);
    dpr_addr_format((struct sockaddr *)&ss, text, sizeof(text));
    CHECK(strcmp(text, "127.0.0.1:8080") == 0);
    snprintf(hp.host, sizeof(hp.host), "::1");
    CHECK(dpr_hostport_resolve(&hp, false, &ss, &len, NULL) == 0);
    dpr_addr_format((struct sockaddr *)&ss, text, sizeof(text));
    CHECK(strcmp(text, "[::1]:8080") == 0);
    hp.host[0] = '\0';
    CHECK(dpr_hostport_resolve(&hp, true, &ss, &len, NULL) == 0);
}

static char tmpdir[] = "/tmp/dpr-test-common-XXXXXX";

TEST(mkdir_and_replace)
{
    char path[PATH_MAX], file[PATH_MAX + 16];
    char *data = NULL;
    size_t len = 0;
    dpr_err err;
    struct stat st;

    snprintf(path, sizeof(path), "%s/a/b/c", tmpdir);
    CHECK(dpr_mkdir_p(path, 0700, &err) == 0);
    CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    CHECK(dpr_mkdir_p(path, 0700, &err) == 0); /* exists: fine */
    snprintf(file, sizeof(file), "%s/f", path);
    CHECK(dpr_replace_file(file, "one", 3, 0600, true, &err) == 0);
    CHECK(dpr_replace_file(file, "two!", 4, 0600, true, &err) == 0);
    int fd = open(file, O_RDONLY);
    CHECK(fd >= 0 && dpr_read_fd(fd, 100, &data, &len) == 0);
    CHECK(len == 4 && strcmp(data, "two!") == 0);
    free(data);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    CHECK_EQ_INT(dpr_read_fd(fd, 3, &data, &len), -EFBIG);
    close(fd);
    CHECK(stat(file, &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(file + strlen(file), 16, ".tmp");
    CHECK(access(file, F_OK) < 0); /* no temporary left */
    snprintf(file, sizeof(file), "%s/f/sub", path);
    CHECK(dpr_mkdir_p(file, 0700, &err) < 0);
    CHECK(strstr(err.msg, "/f") != NULL);
    CHECK_EQ_INT(dpr_mkdir_p("", 0700, &err), -EINVAL);
    CHECK_EQ_INT(dpr_replace_file("/nonexistent/x", "a", 1, 0600, true, &err), -ENOENT);
    CHECK(strstr(err.msg, "/nonexistent/x.tmp") != NULL);
    char dir[8];
    CHECK(dpr_dirname("/x", dir, sizeof(dir)) == 0 && strcmp(dir, "/") == 0);
    CHECK(dpr_dirname("x", dir, sizeof(dir)) == 0 && strcmp(dir, ".") == 0);
    CHECK(dpr_dirname("a/b", dir, sizeof(dir)) == 0 && strcmp(dir, "a") == 0);
}

TEST(lock_file)
{
    char path[PATH_MAX];
    dpr_err err;
    int fd = -1, fd2 = -1;
    pid_t pid;
    int status;

    snprintf(path, sizeof(path), "%s/lock", tmpdir);
    CHECK(dpr_lock_file(path, 0, &fd, &err) == 0);
    /* flock locks belong to the open file: a second process is refused */
    pid = fork();
    if (pid == 0)
        _exit(dpr_lock_file(path, 100, &fd2, &err) == -EBUSY && strstr(err.msg, path) ? 0 : 1);
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
          WEXITSTATUS(status) == 0);
    close(fd);
    pid = fork();
    if (pid == 0)
        _exit(dpr_lock_file(path, 0, &fd2, &err) == 0 ? 0 : 1);
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
          WEXITSTATUS(status) == 0);
}

TEST(errors)
{
    dpr_err err = DPR_ERR_INIT;

    CHECK_EQ_INT(dpr_err_set(&err, -EINVAL, "bad %s", "thing"), -EINVAL);
    CHECK(err.code == -EINVAL && strcmp(err.msg, "bad thing") == 0);
    dpr_err_prefix(&err, "agent.conf:%d", 3);
    CHECK(strcmp(err.msg, "agent.conf:3: bad thing") == 0 && err.code == -EINVAL);
    CHECK_EQ_INT(dpr_err_set(NULL, -EIO, "ignored"), -EIO);
    dpr_err_clear(&err);
    CHECK(err.code == 0 && err.msg[0] == '\0');
    CHECK(strcmp(dpr_err_str(&err, -EIO), strerror(EIO)) == 0);
    CHECK(strcmp(dpr_err_str(NULL, -EIO), strerror(EIO)) == 0);
    /* a long message is cut, never overflows */
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    dpr_err_set(&err, -E2BIG, "%s", big);
    CHECK(strlen(err.msg) == DPR_ERR_MSG_MAX - 1);
}

TEST(clock)
{
    uint64_t a = dpr_mono_ms(), d = dpr_deadline_ms(50);

    CHECK(d >= a + 50);
    CHECK(dpr_ms_left(d) <= 50 && dpr_ms_left(d) >= 0);
    CHECK(dpr_ms_left(dpr_deadline_ms(-1)) == -1);
    CHECK(dpr_ms_left(a) == 0);
    CHECK(dpr_wall_ms() > 1600000000000ull);
}

/* The plain-line form of the logger (stderr is not the journal here). */
TEST(info_fields)
{
    const char *text = "# DPR\r\ndpr_worker_id:7\r\ndpr_world_line:12\r\nx_dpr_domain:no\r\n"
                       "dpr_domain:kv\r\nempty:\r\nlast:9";
    size_t n = 99;
    const char *v = dpr_info_field(text, "dpr_world_line", &n);

    CHECK(v && n == 2 && strncmp(v, "12", 2) == 0);
    v = dpr_info_field(text, "dpr_domain", &n); /* not the x_ one: whole names only */
    CHECK(v && n == 2 && strncmp(v, "kv", 2) == 0);
    CHECK((v = dpr_info_field(text, "empty", &n)) && n == 0);
    CHECK((v = dpr_info_field(text, "last", &n)) && n == 1 && *v == '9');
    CHECK(dpr_info_field(text, "dpr_worker", &n) == NULL); /* a prefix is not a field */
    CHECK(dpr_info_field(text, "missing", &n) == NULL);
    CHECK(dpr_info_field("", "x", &n) == NULL);
}

TEST(log_lines)
{
    int fds[2];
    char out[1024] = "";
    ssize_t n;
    pid_t pid;
    int status;

    CHECK(pipe(fds) == 0);
    pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        unsetenv("JOURNAL_STREAM");
        dpr_log_open("dpr-test", false);
        log_warning("disk %s", "full");
        log_debug("hidden");
        log_info("plain");
        dpr_log_open("dpr-test", true);
        log_debug("shown");
        log_error("bad %d", 7);
        _exit(0);
    }
    close(fds[1]);
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status));
    n = read(fds[0], out, sizeof(out) - 1);
    close(fds[0]);
    out[n > 0 ? n : 0] = '\0';
    CHECK(strstr(out, " dpr-test[") != NULL);
    CHECK(strstr(out, "]: warning: disk full\n") != NULL);
    CHECK(strstr(out, "]: plain\n") != NULL);
    CHECK(strstr(out, "hidden") == NULL);
    CHECK(strstr(out, "]: shown\n") != NULL);
    CHECK(strstr(out, "]: error: bad 7\n") != NULL);
    /* "YYYY-MM-DD HH:MM:SS.mmm " in front of every line */
    CHECK(strlen(out) > 24 && out[4] == '-' && out[10] == ' ' && out[19] == '.');
}

TEST(log_limit)
{
    dpr_log_limit l = {0, 0};
    uint64_t held = 99;

    CHECK(dpr_log_limit_pass(&l, 5000, 1000, &held)); /* the first line passes */
    CHECK_EQ_INT(held, 0);
    CHECK(!dpr_log_limit_pass(&l, 5001, 1000, &held));
    CHECK(!dpr_log_limit_pass(&l, 5999, 1000, &held));
    CHECK(dpr_log_limit_pass(&l, 6000, 1000, &held)); /* a second later */
    CHECK_EQ_INT(held, 2);
    CHECK(!dpr_log_limit_pass(&l, 6500, 1000, &held));
    CHECK(dpr_log_limit_pass(&l, 9000, 1000, &held));
    CHECK_EQ_INT(held, 1); /* counted again from the last line */
}

int main(void)
{
    if (!mkdtemp(tmpdir))
        return 1;
    RUN(fmt_numbers);
    RUN(parse_unsigned);
    RUN(parse_signed_like_redis);
    RUN(buffer);
    RUN(resp_writer);
    RUN(resp_command_in_reserved_room);
    RUN(hostport);
    RUN(resolve_and_format);
    RUN(mkdir_and_replace);
    RUN(lock_file);
    RUN(errors);
    RUN(clock);
    RUN(info_fields);
    RUN(log_lines);
    RUN(log_limit);
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        return 1;
    return check_summary("common");
}
