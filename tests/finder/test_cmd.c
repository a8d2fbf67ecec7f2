/* test_cmd.c - the finder's RESP commands (finder/src/cmd.c) and the RESP
 * request reader (finder/src/request.c), without sockets. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cmd.h"
#include "request.h"

static dpr_buf out;
static unsigned flags;
static dpr_cmd_conn *conn; /* the connection run() executes on (NULL: no grants) */

#define D DPR_DOMAIN_DEFAULT

/* Runs one command given as separate strings; returns the reply text. */
static const char *run(dpr_domains *ds, int argc, ...)
{
    char *argv[16];
    size_t lens[16];
    va_list ap;

    va_start(ap, argc);
    for (int i = 0; i < argc; i++) {
        argv[i] = va_arg(ap, char *);
        lens[i] = strlen(argv[i]);
    }
    va_end(ap);
    out.len = 0;
    if (dpr_cmd_execute(ds, conn, argc, argv, lens, &out, &flags) < 0)
        return "<enomem>";
    if (dpr_buf_append(&out, "", 1) < 0)
        return "<enomem>";
    return out.data;
}

/* What the server does at the end of a loop turn, without the store. */
static void publish(dpr_domains *ds)
{
    dpr_domains_state st;

    if (!dpr_domains_dirty(ds))
        return;
    if (dpr_domains_get_state(ds, &st) == 0) {
        CHECK_EQ_INT(dpr_domains_publish(ds, &st), 0);
        dpr_domains_state_free(&st);
    }
    CHECK(!dpr_domains_dirty(ds));
}

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

TEST(scenario_replies)
{
    dpr_domains *ds = NULL;

    CHECK_EQ_INT(dpr_domains_new(&ds), 0);
    CHECK(strcmp(run(ds, 2, "DPR.SYNC", D), "-ERR unknown domain 'default'\r\n") == 0);
    CHECK(flags == 0);
    CHECK(strcmp(run(ds, 1, "DPR.DOMAINS"), "*0\r\n") == 0);
    CHECK(strcmp(run(ds, 3, "dpr.worker.add", D, "1"), "*2\r\n:1\r\n:0\r\n") == 0);
    CHECK(flags == DPR_CMD_WAIT);
    CHECK(strcmp(run(ds, 1, "dpr.domains"), "*1\r\n$7\r\ndefault\r\n") == 0);
    CHECK(flags == DPR_CMD_WAIT); /* the domain is not durable yet */
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", D, "2"), "*2\r\n:1\r\n:0\r\n") == 0);
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", D, "3"), "*2\r\n:1\r\n:0\r\n") == 0);
    publish(ds);
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", D, "1", "1", "1"), "+OK\r\n") == 0);
    CHECK(flags == DPR_CMD_WAIT);
    /* unpublished: SYNC answers from the working state and must wait; every
     * registered worker is listed, 0 for those with nothing committed */
    CHECK(strcmp(run(ds, 2, "DPR.SYNC", D),
                 "*3\r\n:1\r\n:1\r\n*6\r\n:1\r\n:1\r\n:2\r\n:0\r\n:3\r\n:0\r\n") == 0);
    CHECK(flags == DPR_CMD_WAIT);
    publish(ds);
    CHECK(strcmp(run(ds, 2, "DPR.SYNC", D),
                 "*3\r\n:1\r\n:1\r\n*6\r\n:1\r\n:1\r\n:2\r\n:0\r\n:3\r\n:0\r\n") == 0);
    CHECK(flags == 0);
    run(ds, 7, "DPR.REPORT", D, "1", "2", "1", "1", "1");
    run(ds, 9, "DPR.REPORT", D, "1", "1", "2", "1", "1", "2", "2");
    run(ds, 9, "DPR.REPORT", D, "1", "2", "2", "2", "1", "3", "2");
    publish(ds);
    CHECK(strcmp(run(ds, 2, "DPR.SYNC", D),
                 "*3\r\n:1\r\n:2\r\n*6\r\n:1\r\n:1\r\n:2\r\n:1\r\n:3\r\n:0\r\n") == 0);
    CHECK(strcmp(run(ds, 7, "DPR.REPORT", D, "1", "3", "2", "1", "2"), "+OK\r\n") == 0);
    publish(ds);
    CHECK(strcmp(run(ds, 2, "DPR.SYNC", D),
                 "*3\r\n:1\r\n:2\r\n*6\r\n:1\r\n:2\r\n:2\r\n:2\r\n:3\r\n:2\r\n") == 0);
    /* re-add: new world-line, restore the cut; stale reports; the prefix */
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", D, "2"), "*2\r\n:2\r\n:2\r\n") == 0);
    CHECK(starts(run(ds, 5, "DPR.REPORT", D, "1", "1", "9"), "-STALE world-line 2 is current"));
    CHECK(flags & DPR_CMD_WAIT);
    publish(ds);
    CHECK(strcmp(run(ds, 3, "DPR.PREFIX", D, "1"), "*6\r\n:1\r\n:2\r\n:2\r\n:2\r\n:3\r\n:2\r\n") == 0);
    CHECK(starts(run(ds, 3, "DPR.PREFIX", D, "2"), "-ERR world-line 2 has not ended"));
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.REMOVE", D, "3"), "+OK\r\n") == 0);
    CHECK(starts(run(ds, 3, "DPR.WORKER.REMOVE", D, "3"), "-ERR unknown worker 3"));
    dpr_domains_free(ds);
}

TEST(bad_input_changes_nothing)
{
    static const char *const bad_numbers[] = {
        "", "-1", "+1", " 1", "1 ", "1.0", "0x1", "abc", "9223372036854775808",
        "18446744073709551616", "99999999999999999999999999",
    };
    dpr_domains *ds = NULL;
    dpr_domains_state before, after;

    CHECK_EQ_INT(dpr_domains_new(&ds), 0);
    run(ds, 3, "DPR.WORKER.ADD", D, "1");
    run(ds, 5, "DPR.REPORT", D, "1", "1", "3");
    publish(ds);
    CHECK_EQ_INT(dpr_domains_get_state(ds, &before), 0);
    for (size_t i = 0; i < sizeof(bad_numbers) / sizeof(bad_numbers[0]); i++) {
        const char *n = bad_numbers[i];
        CHECK(starts(run(ds, 3, "DPR.WORKER.ADD", D, n), "-ERR invalid worker id"));
        CHECK(starts(run(ds, 5, "DPR.REPORT", D, n, "1", "4"), "-ERR invalid world-line"));
        CHECK(starts(run(ds, 5, "DPR.REPORT", D, "1", "1", n), "-ERR invalid version"));
        CHECK(starts(run(ds, 7, "DPR.REPORT", D, "1", "1", "4", n, "1"),
                     "-ERR invalid dependency worker id"));
        CHECK(starts(run(ds, 7, "DPR.REPORT", D, "1", "1", "4", "1", n),
                     "-ERR invalid dependency version"));
    }
    CHECK(starts(run(ds, 6, "DPR.REPORT", D, "1", "1", "4", "2"), "-ERR wrong number"));
    CHECK(starts(run(ds, 5, "DPR.REPORT", D, "0", "1", "4"), "-ERR invalid world-line 0"));
    CHECK(starts(run(ds, 5, "DPR.REPORT", D, "1", "1", "0"), "-ERR invalid version 0"));
    CHECK(starts(run(ds, 7, "DPR.REPORT", D, "1", "1", "4", "2", "5"), "-ERR dependency (2, 5)"));
    CHECK(starts(run(ds, 5, "DPR.REPORT", D, "2", "1", "4"), "-ERR world-line 2 is newer"));
    CHECK(starts(run(ds, 5, "DPR.REPORT", D, "1", "7", "4"), "-ERR unknown worker 7"));
    /* issue 8: a dependency on a worker that never registered */
    CHECK(strcmp(run(ds, 9, "DPR.REPORT", D, "1", "1", "5", "1", "5", "999", "5"),
                 "-ERR dependency (999, 5) is on worker 999, which domain 'default' never "
                 "registered: report of version 5 refused\r\n") == 0);
    CHECK(starts(run(ds, 2, "DPR.WORKER.ADD", D), "-ERR wrong number of arguments for 'DPR.WORKER.ADD'"));
    CHECK(starts(run(ds, 3, "DPR.SYNC", D, "x"), "-ERR wrong number"));
    CHECK(starts(run(ds, 2, "SET\r\nX", "v"), "-ERR unknown command 'SET??X'"));
    CHECK(strchr(out.data + 1, '\r') == out.data + out.len - 3); /* one line */
    CHECK(!dpr_domains_dirty(ds));
    CHECK_EQ_INT(dpr_domains_get_state(ds, &after), 0);
    CHECK_EQ_U64(after.generation, before.generation);
    dpr_domains_state_free(&before);
    dpr_domains_state_free(&after);
    /* numbers at the edges */
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", D, "9223372036854775807"),
                 "*2\r\n:1\r\n:0\r\n") == 0);
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", D, "0001", "9223372036854775807", "007"), "+OK\r\n") == 0);
    dpr_domains_free(ds);
}

/* Issue 8: DPR.WORKER.ADD of a live worker by anyone forced a rollback of
 * the whole cluster. A worker registered with a token is re-registered
 * (new world-line) or removed only with that token; a refusal names the
 * worker, never shows a token, and changes nothing. */
TEST(worker_tokens)
{
    dpr_domains *ds = NULL;
    dpr_domains_state before, after;
    char longtok[DPR_FINDER_TOKEN_MAX + 2];
    static const char add_refused[] =
        "-ERR worker 1 is registered by its owner: DPR.WORKER.ADD needs its token\r\n";
    static const char remove_refused[] =
        "-ERR worker 1 is registered by its owner: DPR.WORKER.REMOVE needs its token\r\n";

    CHECK_EQ_INT(dpr_domains_new(&ds), 0);
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.ADD", D, "1", "s3cret"), "*2\r\n:1\r\n:0\r\n") == 0);
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", D, "2"), "*2\r\n:1\r\n:0\r\n") == 0);
    run(ds, 5, "DPR.REPORT", D, "1", "1", "1");
    run(ds, 5, "DPR.REPORT", D, "1", "2", "1");
    publish(ds);
    CHECK_EQ_INT(dpr_domains_get_state(ds, &before), 0);
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", D, "1"), add_refused) == 0);
    CHECK(flags & DPR_CMD_DENIED);
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.ADD", D, "1", "guess"), add_refused) == 0);
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.ADD", D, "1", "s3cret2"), add_refused) == 0);
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.REMOVE", D, "1"), remove_refused) == 0);
    CHECK(flags & DPR_CMD_DENIED);
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.REMOVE", D, "1", "guess"), remove_refused) == 0);
    /* bad tokens: refused as such, without being shown */
    memset(longtok, 'k', sizeof(longtok) - 1);
    longtok[sizeof(longtok) - 1] = '\0';
    CHECK(starts(run(ds, 4, "DPR.WORKER.ADD", D, "1", longtok), "-ERR invalid token: expected 1 "
                                                          "to 128 visible ASCII characters"));
    CHECK(strstr(out.data, "kkk") == NULL);
    CHECK(!(flags & DPR_CMD_DENIED));
    CHECK(starts(run(ds, 4, "DPR.WORKER.ADD", D, "3", "two words"), "-ERR invalid token"));
    CHECK(strstr(out.data, "words") == NULL);
    CHECK(starts(run(ds, 4, "DPR.WORKER.ADD", D, "3", ""), "-ERR invalid token"));
    CHECK(starts(run(ds, 4, "DPR.WORKER.REMOVE", D, "1", "bad\ttoken"), "-ERR invalid token"));
    CHECK(starts(run(ds, 5, "DPR.WORKER.ADD", D, "1", "s3cret", "x"),
                 "-ERR wrong number of arguments for 'DPR.WORKER.ADD'"));
    CHECK(starts(run(ds, 5, "DPR.WORKER.REMOVE", D, "1", "s3cret", "x"),
                 "-ERR wrong number of arguments for 'DPR.WORKER.REMOVE'"));
    CHECK(!dpr_domains_dirty(ds));
    CHECK_EQ_INT(dpr_domains_get_state(ds, &after), 0);
    CHECK_EQ_U64(after.generation, before.generation);
    CHECK_EQ_U64(after.domains[0].state.world_line, 1);
    CHECK(!dpr_finder_has_worker(dpr_domains_find(ds, D), 3));
    dpr_domains_state_free(&before);
    dpr_domains_state_free(&after);

    /* with the token: the crash-restart path bumps the world-line */
    CHECK(strcmp(run(ds, 4, "dpr.worker.add", D, "1", "s3cret"), "*2\r\n:2\r\n:1\r\n") == 0);
    CHECK(flags == DPR_CMD_WAIT);
    publish(ds);
    CHECK(strcmp(run(ds, 2, "DPR.SYNC", D), "*3\r\n:2\r\n:1\r\n*4\r\n:1\r\n:1\r\n:2\r\n:1\r\n") == 0);
    /* a worker without a token takes the one presented next */
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.ADD", D, "2", "other"), "*2\r\n:3\r\n:1\r\n") == 0);
    CHECK(starts(run(ds, 3, "DPR.WORKER.ADD", D, "2"), "-ERR worker 2 is registered by its owner"));
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.REMOVE", D, "1", "s3cret"), "+OK\r\n") == 0);
    CHECK(starts(run(ds, 4, "DPR.WORKER.REMOVE", D, "1", "s3cret"), "-ERR unknown worker 1"));
    dpr_domains_free(ds);
}

/* Issue 9: every command names its domain; each domain has its own
 * world-lines and cut, and a worker id means nothing across domains. */
TEST(domains)
{
    static const char *const bad_names[] = {
        "", "Default", "-kv", ".kv", "k v", "kv\r\nX", "\xc3\xa9t\xc3\xa9",
        "a234567890123456789012345678901234567890123456789012345678901234", /* 64 */
    };
    static const char unknown[] = "-ERR unknown domain 'nope'\r\n";
    static const char invalid[] = "-ERR invalid domain name\r\n";
    char nul_name[] = "kv\0x";
    char *argv[2] = { "DPR.SYNC", nul_name };
    size_t lens[2] = { 8, 4 };
    dpr_domains *ds = NULL;
    dpr_domains_state before, after;

    CHECK_EQ_INT(dpr_domains_new(&ds), 0);
    /* the same worker id in two domains: two workers, no world-line bump */
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", "kv", "1"), "*2\r\n:1\r\n:0\r\n") == 0);
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", "kv", "2"), "*2\r\n:1\r\n:0\r\n") == 0);
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", "sessions", "1"), "*2\r\n:1\r\n:0\r\n") == 0);
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", "a-1.b_2", "7"), "*2\r\n:1\r\n:0\r\n") == 0);
    publish(ds);
    CHECK(strcmp(run(ds, 1, "DPR.DOMAINS"),
                 "*3\r\n$7\r\na-1.b_2\r\n$2\r\nkv\r\n$8\r\nsessions\r\n") == 0);
    CHECK(flags == 0);
    run(ds, 5, "DPR.REPORT", "kv", "1", "1", "3");
    run(ds, 5, "DPR.REPORT", "kv", "1", "2", "3");
    run(ds, 5, "DPR.REPORT", "sessions", "1", "1", "5");
    publish(ds);
    CHECK(strcmp(run(ds, 2, "DPR.SYNC", "kv"),
                 "*3\r\n:1\r\n:3\r\n*4\r\n:1\r\n:3\r\n:2\r\n:3\r\n") == 0);
    CHECK(strcmp(run(ds, 2, "DPR.SYNC", "sessions"), "*3\r\n:1\r\n:5\r\n*2\r\n:1\r\n:5\r\n") == 0);
    /* a crash-restart in kv bumps kv's world-line only */
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", "kv", "1"), "*2\r\n:2\r\n:3\r\n") == 0);
    CHECK(flags == DPR_CMD_WAIT);
    /* sessions' answers do not wait for kv's change */
    CHECK(strcmp(run(ds, 2, "DPR.SYNC", "sessions"), "*3\r\n:1\r\n:5\r\n*2\r\n:1\r\n:5\r\n") == 0);
    CHECK(flags == 0);
    publish(ds);
    CHECK(starts(run(ds, 2, "DPR.SYNC", "kv"), "*3\r\n:2\r\n"));
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "sessions", "1", "1", "6"), "+OK\r\n") == 0);
    CHECK(starts(run(ds, 5, "DPR.REPORT", "kv", "1", "2", "9"), "-STALE world-line 2 is current"));
    CHECK(strcmp(run(ds, 3, "DPR.PREFIX", "kv", "1"), "*4\r\n:1\r\n:3\r\n:2\r\n:3\r\n") == 0);
    CHECK(starts(run(ds, 3, "DPR.PREFIX", "sessions", "1"), "-ERR world-line 1 has not ended"));
    publish(ds);

    /* refusals, each changing nothing */
    CHECK_EQ_INT(dpr_domains_get_state(ds, &before), 0);
    /* a dependency on a worker of another domain: unknown in this one */
    CHECK(strcmp(run(ds, 7, "DPR.REPORT", "kv", "2", "1", "4", "7", "1"),
                 "-ERR dependency (7, 1) is on worker 7, which domain 'kv' never registered: "
                 "report of version 4 refused\r\n") == 0);
    CHECK(strcmp(run(ds, 2, "DPR.SYNC", "nope"), unknown) == 0);
    CHECK(flags == 0);
    CHECK(strcmp(run(ds, 3, "DPR.PREFIX", "nope", "1"), unknown) == 0);
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "nope", "1", "1", "1"), unknown) == 0);
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.REMOVE", "nope", "1"), unknown) == 0);
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.REMOVE", "nope", "1", "tok"), unknown) == 0);
    /* the domain is checked before the other arguments */
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "nope", "x", "y", "z"), unknown) == 0);
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        const char *n = bad_names[i];
        CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", n, "1"), invalid) == 0);
        CHECK(strcmp(run(ds, 4, "DPR.WORKER.ADD", n, "1", "tok"), invalid) == 0);
        CHECK(strcmp(run(ds, 3, "DPR.WORKER.REMOVE", n, "1"), invalid) == 0);
        CHECK(strcmp(run(ds, 5, "DPR.REPORT", n, "1", "1", "1"), invalid) == 0);
        CHECK(strcmp(run(ds, 2, "DPR.SYNC", n), invalid) == 0);
        CHECK(strcmp(run(ds, 3, "DPR.PREFIX", n, "1"), invalid) == 0);
    }
    /* a NUL inside the name */
    out.len = 0;
    CHECK_EQ_INT(dpr_cmd_execute(ds, conn, 2, argv, lens, &out, &flags), 0);
    CHECK(out.len == sizeof(invalid) - 1 && memcmp(out.data, invalid, out.len) == 0);
    /* arity first */
    CHECK(starts(run(ds, 1, "DPR.SYNC"), "-ERR wrong number of arguments for 'DPR.SYNC'"));
    CHECK(starts(run(ds, 2, "DPR.PREFIX", "kv"), "-ERR wrong number"));
    CHECK(starts(run(ds, 4, "DPR.REPORT", "kv", "1", "1"), "-ERR wrong number"));
    CHECK(starts(run(ds, 2, "DPR.WORKER.ADD", "kv"), "-ERR wrong number"));
    CHECK(starts(run(ds, 2, "DPR.DOMAINS", "kv"), "-ERR wrong number"));
    /* a refused DPR.WORKER.ADD makes no domain */
    CHECK(starts(run(ds, 3, "DPR.WORKER.ADD", "fresh", "x"), "-ERR invalid worker id"));
    CHECK(starts(run(ds, 4, "DPR.WORKER.ADD", "fresh", "1", "two words"), "-ERR invalid token"));
    CHECK(dpr_domains_find(ds, "fresh") == NULL);
    CHECK(!dpr_domains_dirty(ds));
    CHECK_EQ_INT(dpr_domains_get_state(ds, &after), 0);
    CHECK_EQ_U64(after.generation, before.generation);
    CHECK_EQ_U64(after.n, 3);
    dpr_domains_state_free(&before);
    dpr_domains_state_free(&after);
    /* a removed last worker leaves its domain (and its world-line) behind */
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.REMOVE", "a-1.b_2", "7"), "+OK\r\n") == 0);
    publish(ds);
    CHECK(strcmp(run(ds, 2, "DPR.SYNC", "a-1.b_2"), "*3\r\n:1\r\n:0\r\n*0\r\n") == 0);
    CHECK_EQ_U64(dpr_domains_count(ds), 3);
    dpr_domains_free(ds);
}

/* Fencing: the owner (the agent) moved worker 3 to another node and gave
 * its record a new token. The old incarnation, still holding the old token
 * on its connection, is refused ("-FENCED") from its next report on; the
 * new incarnation authenticates with the new token and reports. */
/* Issue 13: DPR.WORKER.LEAVE, a planned stop, then DPR.WORKER.ADD again
 * without a new world-line. The token comes as an argument or from the
 * connection's grant; refusals change nothing. */
TEST(worker_leave)
{
    dpr_domains *ds = NULL;
    dpr_cmd_conn *owner = NULL, *other = NULL, *saved = conn;
    static const char refused[] =
        "-ERR worker 1 is registered by its owner: DPR.WORKER.LEAVE needs its token\r\n";

    CHECK_EQ_INT(dpr_domains_new(&ds), 0);
    CHECK_EQ_INT(dpr_cmd_conn_new(&owner), 0);
    CHECK_EQ_INT(dpr_cmd_conn_new(&other), 0);
    conn = owner;
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.ADD", "kv", "1", "tok1"), "*2\r\n:1\r\n:0\r\n") == 0);
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", "kv", "2"), "*2\r\n:1\r\n:0\r\n") == 0);
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "1", "1", "3"), "+OK\r\n") == 0);
    CHECK(strcmp(run(ds, 7, "DPR.REPORT", "kv", "1", "1", "4", "2", "4"), "+OK\r\n") == 0);
    publish(ds);
    /* version 4 waits for (2, 4) */
    CHECK(starts(run(ds, 3, "DPR.WORKER.LEAVE", "kv", "1"),
                 "-ERR worker 1 has reported checkpoints that are not in the cut yet"));
    CHECK(!dpr_domains_dirty(ds));
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "1", "2", "4"), "+OK\r\n") == 0);
    publish(ds);
    conn = other;
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.LEAVE", "kv", "1"), refused) == 0);
    CHECK(flags & DPR_CMD_DENIED);
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.LEAVE", "kv", "1", "guess"), refused) == 0);
    CHECK(starts(run(ds, 4, "DPR.WORKER.LEAVE", "kv", "1", "a\tb"), "-ERR invalid token"));
    CHECK(starts(run(ds, 3, "DPR.WORKER.LEAVE", "kv", "9"), "-ERR unknown worker 9"));
    CHECK(starts(run(ds, 3, "DPR.WORKER.LEAVE", "nope", "1"), "-ERR unknown domain 'nope'"));
    CHECK(starts(run(ds, 3, "DPR.WORKER.LEAVE", "kv", "x"), "-ERR invalid worker id 'x'"));
    CHECK(starts(run(ds, 2, "DPR.WORKER.LEAVE", "kv"),
                 "-ERR wrong number of arguments for 'DPR.WORKER.LEAVE'"));
    CHECK(!dpr_domains_dirty(ds));
    /* the owner's connection: its grant stands for the token */
    conn = owner;
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.LEAVE", "kv", "1"), "+OK\r\n") == 0);
    CHECK(flags & DPR_CMD_WAIT); /* told once durable */
    publish(ds);
    CHECK(dpr_finder_is_away(dpr_domains_find(ds, "kv"), 1));
    CHECK(starts(run(ds, 5, "DPR.REPORT", "kv", "1", "1", "5"), "-ERR worker 1 left"));
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "1", "1", "4"), "+OK\r\n") == 0); /* resend */
    /* back: the same world-line, its last checkpoint */
    conn = other;
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.ADD", "kv", "1", "tok1"), "*2\r\n:1\r\n:4\r\n") == 0);
    publish(ds);
    CHECK(strcmp(run(ds, 2, "DPR.SYNC", "kv"), "*3\r\n:1\r\n:4\r\n*4\r\n:1\r\n:4\r\n:2\r\n:4\r\n")
          == 0);
    /* the worker without a token leaves with nothing more */
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.LEAVE", "kv", "2"), "+OK\r\n") == 0);
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", "kv", "2"), "*2\r\n:1\r\n:4\r\n") == 0);
    /* not away: the crash path */
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", "kv", "2"), "*2\r\n:2\r\n:4\r\n") == 0);
    publish(ds);
    conn = saved;
    dpr_cmd_conn_free(owner);
    dpr_cmd_conn_free(other);
    dpr_domains_free(ds);
}

TEST(auth_and_fencing)
{
    dpr_domains *ds = NULL;
    dpr_domains_state before, after;
    dpr_cmd_conn *old_inc = NULL, *new_inc = NULL, *other = NULL;
    dpr_finder *f;
    char name[16], longtok[DPR_FINDER_TOKEN_MAX + 2];
    static const char no_auth[] =
        "-ERR worker 3 is registered by its owner: DPR.REPORT needs DPR.AUTH with its token "
        "on this connection\r\n";
    static const char fenced[] =
        "-FENCED worker 3 now belongs to another owner (it moved): this incarnation's reports "
        "are refused\r\n";

    CHECK_EQ_INT(dpr_domains_new(&ds), 0);
    CHECK_EQ_INT(dpr_cmd_conn_new(&old_inc), 0);
    CHECK_EQ_INT(dpr_cmd_conn_new(&new_inc), 0);
    CHECK_EQ_INT(dpr_cmd_conn_new(&other), 0);

    /* a registration with a token grants its connection */
    conn = old_inc;
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.ADD", "kv", "3", "tok-A"), "*2\r\n:1\r\n:0\r\n") == 0);
    CHECK_EQ_U64(dpr_cmd_conn_grants(old_inc), 1);
    CHECK(strcmp(run(ds, 3, "DPR.WORKER.ADD", "kv", "4"), "*2\r\n:1\r\n:0\r\n") == 0);
    CHECK_EQ_U64(dpr_cmd_conn_grants(old_inc), 1); /* no token, no grant */
    publish(ds);
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "1", "3", "1"), "+OK\r\n") == 0);
    CHECK(flags == DPR_CMD_WAIT);
    publish(ds);

    /* another connection: no grant, no reports; a worker registered
     * without a token reports anywhere, as before tokens */
    conn = other;
    CHECK_EQ_INT(dpr_domains_get_state(ds, &before), 0);
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "1", "3", "2"), no_auth) == 0);
    CHECK(flags == DPR_CMD_DENIED);
    conn = NULL;
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "1", "3", "2"), no_auth) == 0);
    CHECK(strcmp(run(ds, 4, "DPR.AUTH", "kv", "3", "tok-A"),
                 "-ERR this connection cannot hold DPR.AUTH grants\r\n") == 0);
    conn = other;
    /* wrong tokens, unknown workers and bad input: refused, nothing held */
    CHECK(strcmp(run(ds, 4, "DPR.AUTH", "kv", "3", "tok-B"),
                 "-FENCED worker 3 is registered with another token: this connection may not "
                 "act for it (its owner moved it, or another incarnation registered it)\r\n") == 0);
    CHECK(flags == DPR_CMD_DENIED);
    CHECK(strstr(out.data, "tok-") == NULL);
    CHECK(starts(run(ds, 4, "DPR.AUTH", "kv", "4", "tok-A"),
                 "-FENCED worker 4 is registered without a token: "));
    CHECK(strcmp(run(ds, 4, "DPR.AUTH", "kv", "9", "tok-A"), "-ERR unknown worker 9\r\n") == 0);
    CHECK(strcmp(run(ds, 4, "DPR.AUTH", "nope", "3", "tok-A"),
                 "-ERR unknown domain 'nope'\r\n") == 0);
    CHECK(starts(run(ds, 4, "DPR.AUTH", "kv", "x", "tok-A"), "-ERR invalid worker id 'x'"));
    CHECK(starts(run(ds, 4, "DPR.AUTH", "kv", "3", "two words"), "-ERR invalid token"));
    CHECK(strstr(out.data, "words") == NULL);
    CHECK(starts(run(ds, 4, "DPR.AUTH", "kv", "3", ""), "-ERR invalid token"));
    CHECK(starts(run(ds, 3, "DPR.AUTH", "kv", "3"),
                 "-ERR wrong number of arguments for 'DPR.AUTH'"));
    CHECK(starts(run(ds, 5, "DPR.AUTH", "kv", "3", "tok-A", "x"), "-ERR wrong number"));
    CHECK_EQ_U64(dpr_cmd_conn_grants(other), 0);
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "1", "3", "2"), no_auth) == 0);
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "1", "4", "1"), "+OK\r\n") == 0);
    publish(ds);
    CHECK_EQ_INT(dpr_domains_get_state(ds, &after), 0);
    CHECK_EQ_U64(after.domains[0].state.workers[0].durable, 1); /* worker 3: only version 1 */
    dpr_domains_state_free(&before);
    dpr_domains_state_free(&after);
    /* with the token, DPR.AUTH grants the connection (again: one grant) */
    CHECK(strcmp(run(ds, 4, "dpr.auth", "kv", "3", "tok-A"), "+OK\r\n") == 0);
    CHECK(flags == 0);
    CHECK(strcmp(run(ds, 4, "DPR.AUTH", "kv", "3", "tok-A"), "+OK\r\n") == 0);
    CHECK_EQ_U64(dpr_cmd_conn_grants(other), 1);
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "1", "3", "2"), "+OK\r\n") == 0);
    publish(ds);

    /* the owner moves worker 3: a new token, nothing else changes */
    f = dpr_domains_find(ds, "kv");
    CHECK_EQ_INT(dpr_domains_get_state(ds, &before), 0);
    CHECK_EQ_INT(dpr_finder_set_token(f, 3, "tok-B", 5), 0);
    CHECK(dpr_domains_dirty(ds)); /* the token is durable state: saved like the rest */
    /* the old incarnation's next report is fenced, on either connection;
     * the answer reads the working state, so it waits for its save */
    conn = old_inc;
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "1", "3", "3"), fenced) == 0);
    CHECK(flags == (DPR_CMD_WAIT | DPR_CMD_DENIED));
    CHECK(strstr(out.data, "tok-") == NULL);
    conn = other;
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "1", "3", "3"), fenced) == 0);
    CHECK(starts(run(ds, 4, "DPR.AUTH", "kv", "3", "tok-A"), "-FENCED worker 3 is registered "
                                                              "with another token"));
    /* ... and so is its registration (a crash-restart would roll back) */
    CHECK(starts(run(ds, 4, "DPR.WORKER.ADD", "kv", "3", "tok-A"),
                 "-ERR worker 3 is registered by its owner: DPR.WORKER.ADD needs its token"));
    publish(ds);
    CHECK_EQ_INT(dpr_domains_get_state(ds, &after), 0);
    CHECK_EQ_U64(after.domains[0].state.world_line, before.domains[0].state.world_line);
    CHECK_EQ_U64(after.domains[0].state.workers[0].durable, 2);
    CHECK_EQ_U64(after.domains[0].state.workers[0].cut, before.domains[0].state.workers[0].cut);
    CHECK(strcmp(after.domains[0].state.workers[0].token, "tok-B") == 0);
    CHECK_EQ_U64(after.generation, before.generation + 1);
    dpr_domains_state_free(&before);
    dpr_domains_state_free(&after);

    /* the new incarnation: registers with the new token (a restart: the
     * domain rolls back to the cut, which it restores) and reports */
    conn = new_inc;
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.ADD", "kv", "3", "tok-B"), "*2\r\n:2\r\n:2\r\n") == 0);
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "2", "3", "3"), "+OK\r\n") == 0);
    publish(ds);
    /* or, on another connection, after DPR.AUTH with the new token */
    conn = other;
    CHECK(strcmp(run(ds, 4, "DPR.AUTH", "kv", "3", "tok-B"), "+OK\r\n") == 0);
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "2", "3", "4"), "+OK\r\n") == 0);
    conn = old_inc;
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "2", "3", "5"), fenced) == 0);
    /* setting the same token again changes nothing */
    publish(ds);
    CHECK_EQ_INT(dpr_finder_set_token(f, 3, "tok-B", 5), 0);
    CHECK(!dpr_domains_dirty(ds));
    /* a worker removed (and so without a record) reports as an unknown one */
    conn = new_inc;
    CHECK(strcmp(run(ds, 4, "DPR.WORKER.REMOVE", "kv", "3", "tok-B"), "+OK\r\n") == 0);
    CHECK(starts(run(ds, 5, "DPR.REPORT", "kv", "2", "3", "9"), "-ERR unknown worker 3"));
    CHECK(strcmp(run(ds, 4, "DPR.AUTH", "kv", "3", "tok-B"), "-ERR unknown worker 3\r\n") == 0);

    /* at most DPR_CMD_MAX_GRANTS grants per connection */
    conn = other;
    for (int i = 0; i < DPR_CMD_MAX_GRANTS + 1; i++) {
        snprintf(name, sizeof(name), "%d", 100 + i);
        CHECK(strcmp(run(ds, 4, "DPR.WORKER.ADD", "kv", name, "t"), "*2\r\n:2\r\n:0\r\n") == 0);
    }
    CHECK_EQ_U64(dpr_cmd_conn_grants(other), DPR_CMD_MAX_GRANTS);
    snprintf(name, sizeof(name), "%d", 100 + DPR_CMD_MAX_GRANTS);
    CHECK(strcmp(run(ds, 4, "DPR.AUTH", "kv", name, "t"),
                 "-ERR too many DPR.AUTH grants on this connection (at most 64)\r\n") == 0);
    CHECK(strcmp(run(ds, 5, "DPR.REPORT", "kv", "2", name, "1"),
                 "-ERR worker 164 is registered by its owner: DPR.REPORT needs DPR.AUTH with "
                 "its token on this connection\r\n") == 0);
    CHECK(strcmp(run(ds, 4, "DPR.AUTH", "kv", "100", "t"), "+OK\r\n") == 0); /* held */
    CHECK_EQ_U64(dpr_cmd_conn_grants(other), DPR_CMD_MAX_GRANTS);

    /* the C calls' contract */
    memset(longtok, 'k', sizeof(longtok) - 1);
    longtok[sizeof(longtok) - 1] = '\0';
    CHECK_EQ_INT(dpr_finder_set_token(f, 100, "", 0), -EINVAL);
    CHECK_EQ_INT(dpr_finder_set_token(f, 100, "a b", 3), -EINVAL);
    CHECK_EQ_INT(dpr_finder_set_token(f, 100, longtok, DPR_FINDER_TOKEN_MAX + 1), -EINVAL);
    CHECK_EQ_INT(dpr_finder_set_token(f, 3, "tok-C", 5), -ENOENT); /* retired */
    CHECK_EQ_INT(dpr_finder_set_token(f, 999, "tok-C", 5), -ENOENT);
    CHECK_EQ_INT(dpr_finder_token_check(f, 100, longtok, DPR_FINDER_TOKEN_MAX + 1), -EACCES);
    CHECK_EQ_INT(dpr_finder_token_check(f, 3, "tok-B", 5), -ENOENT);

    dpr_cmd_conn_free(old_inc);
    dpr_cmd_conn_free(new_inc);
    dpr_cmd_conn_free(other);
    conn = NULL;
    dpr_domains_free(ds);
}

TEST(misc_commands)
{
    dpr_domains *ds = NULL;

    CHECK_EQ_INT(dpr_domains_new(&ds), 0);
    CHECK(strcmp(run(ds, 1, "ping"), "+PONG\r\n") == 0);
    CHECK(strcmp(run(ds, 2, "PING", "hi"), "$2\r\nhi\r\n") == 0);
    CHECK(strcmp(run(ds, 2, "COMMAND", "DOCS"), "*0\r\n") == 0);
    CHECK(strcmp(run(ds, 1, "QUIT"), "+OK\r\n") == 0);
    CHECK(flags == DPR_CMD_CLOSE);
    dpr_domains_free(ds);
}

/* Feeds text to a reader and collects the requests as "a|b|c;" lines. */
static int parse(const char *in, size_t len, size_t chunk, size_t max_bytes, char *got,
                 size_t gotlen, const char **err)
{
    dpr_reqreader *r = NULL;
    dpr_request q;
    size_t used = 0;
    int rc = 0;

    got[0] = '\0';
    if (dpr_reqreader_new(8, max_bytes, &r) < 0)
        return -ENOMEM;
    for (size_t off = 0; off < len && rc >= 0; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        rc = dpr_reqreader_feed(r, in + off, n);
        while (rc >= 0 && (rc = dpr_reqreader_next(r, &q)) == 1) {
            for (int i = 0; i < q.argc; i++)
                used += (size_t)snprintf(got + used, gotlen - used, "%s%.*s", i ? "|" : "",
                                         (int)q.argvlen[i], q.argv[i]);
            used += (size_t)snprintf(got + used, gotlen - used, ";");
        }
    }
    if (rc < 0 && err) {
        static char msg[256];
        snprintf(msg, sizeof(msg), "%s", dpr_reqreader_error(r));
        *err = msg;
    }
    dpr_reqreader_free(r);
    return rc < 0 ? rc : 0;
}

#define IN(s) s, sizeof(s) - 1

TEST(request_reader)
{
    char got[512];
    const char *err = NULL;
    static const char pipeline[] =
        "*2\r\n$4\r\nPING\r\n$3\r\na\0b\r\n*0\r\n*1\r\n$8\r\nDPR.SYNC\r\n";

    /* whole, and byte by byte */
    CHECK_EQ_INT(parse(IN(pipeline), 1000, 100, got, sizeof(got), NULL), 0);
    CHECK(memcmp(got, "PING|a", 6) == 0);
    CHECK_EQ_INT(parse(IN(pipeline), 1, 100, got, sizeof(got), NULL), 0);
    CHECK(strstr(got, "DPR.SYNC;") != NULL);

    CHECK_EQ_INT(parse(IN("PING\r\n"), 100, 100, got, sizeof(got), &err), -EPROTO);
    CHECK_EQ_INT(parse(IN("$4\r\nPING\r\n"), 100, 100, got, sizeof(got), &err), -EPROTO);
    CHECK(strstr(err, "array of bulk strings") != NULL);
    CHECK_EQ_INT(parse(IN("*2\r\n*1\r\n$1\r\na\r\n"), 100, 100, got, sizeof(got), &err),
                 -EPROTO);
    CHECK(strstr(err, "nested") != NULL);
    CHECK_EQ_INT(parse(IN("*1\r\n:1\r\n"), 100, 100, got, sizeof(got), &err), -EPROTO);
    CHECK_EQ_INT(parse(IN("*1\r\n$-1\r\n"), 100, 100, got, sizeof(got), &err), -EPROTO);
    CHECK_EQ_INT(parse(IN("*1\r\n$2\r\nabXY"), 100, 100, got, sizeof(got), &err), -EPROTO);
    CHECK(strstr(err, "CRLF") != NULL);
    CHECK_EQ_INT(parse(IN("*9\r\n"), 100, 100, got, sizeof(got), &err), -E2BIG);
    CHECK_EQ_INT(parse(IN("*4294967297\r\n$1\r\na\r\n"), 100, 100, got, sizeof(got), &err),
                 -E2BIG);
    CHECK_EQ_INT(parse(IN("*1\r\n$99999999999\r\n"), 100, 100, got, sizeof(got), &err),
                 -E2BIG);
    CHECK_EQ_INT(parse(IN("*1\r\n$1111111111111111111111111111"), 100, 100, got, sizeof(got),
                       &err), -EPROTO);
    /* many small arguments adding up over the limit */
    CHECK_EQ_INT(parse(IN("*3\r\n$30\r\n012345678901234567890123456789\r\n"
                          "$30\r\n012345678901234567890123456789\r\n"
                          "$30\r\n012345678901234567890123456789\r\n"),
                       7, 100, got, sizeof(got), &err), -E2BIG);
    /* pipelined small requests above the limit in total are fine */
    CHECK_EQ_INT(parse(IN("*1\r\n$30\r\n012345678901234567890123456789\r\n"
                          "*1\r\n$30\r\n012345678901234567890123456789\r\n"
                          "*1\r\n$30\r\n012345678901234567890123456789\r\n"),
                       1000, 100, got, sizeof(got), &err), 0);
}

int main(void)
{
    dpr_buf_init(&out);
    if (dpr_cmd_conn_new(&conn) < 0)
        return 1;
    RUN(scenario_replies);
    RUN(bad_input_changes_nothing);
    RUN(domains);
    RUN(misc_commands);
    RUN(worker_tokens);
    RUN(worker_leave);
    {
        dpr_cmd_conn *saved = conn;
        RUN(auth_and_fencing);
        conn = saved;
    }
    RUN(request_reader);
    dpr_cmd_conn_free(conn);
    dpr_buf_free(&out);
    return check_summary("cmd");
}
