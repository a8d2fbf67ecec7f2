/* test_rp_keys.c - dpr-redis' command table and key positions
 * (cachestore/redis/rp_keys.c), on entries of Redis 7.0's own COMMAND reply. */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <string.h>

#include "check.h"
#include "common/clock.h"
#include "kv_layout.h"
#include "rp_keys.h"

/* GET MSET EVAL ZUNIONSTORE OBJECT (with its subcommands) XREAD LMPOP PING
 * FLUSHALL SET GEORADIUS SORT, as redis-server 7.0.15 answers COMMAND */
static const char COMMANDS[] =
    "*12\r\n*10\r\n$8\r\nflushall\r\n:-1\r\n*1\r\n$5\r\nwrite\r\n:0\r\n:0\r\n:0\r\n*4\r\n$9\r\n"
    "@keyspace\r\n$6\r\n@write\r\n$5\r\n@slow\r\n$10\r\n@dangerous\r\n*2\r\n$25\r\nrequest_poli"
    "cy:all_shards\r\n$29\r\nresponse_policy:all_succeeded\r\n*0\r\n*0\r\n*10\r\n$3\r\nget\r\n:"
    "2\r\n*2\r\n$8\r\nreadonly\r\n$4\r\nfast\r\n:1\r\n:1\r\n:1\r\n*3\r\n$5\r\n@read\r\n$7\r\n@s"
    "tring\r\n$5\r\n@fast\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n$2\r\nRO\r\n$6\r\naccess\r"
    "\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\ninde"
    "x\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r"
    "\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n*10\r\n$5\r\nlmpop\r"
    "\n:-4\r\n*2\r\n$5\r\nwrite\r\n$11\r\nmovablekeys\r\n:0\r\n:0\r\n:0\r\n*3\r\n$6\r\n@write\r"
    "\n$5\r\n@list\r\n$5\r\n@slow\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*3\r\n$2\r\nRW\r\n$6\r\na"
    "ccess\r\n$6\r\ndelete\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\ns"
    "pec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$6\r\nkeynum\r\n$"
    "4\r\nspec\r\n*6\r\n$9\r\nkeynumidx\r\n:0\r\n$8\r\nfirstkey\r\n:1\r\n$7\r\nkeystep\r\n:1\r"
    "\n*0\r\n*10\r\n$6\r\nobject\r\n:-2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*1\r\n$5\r\n@slow\r\n*0\r\n*"
    "0\r\n*5\r\n*10\r\n$15\r\nobject|idletime\r\n:3\r\n*1\r\n$8\r\nreadonly\r\n:2\r\n:2\r\n:1\r"
    "\n*3\r\n$9\r\n@keyspace\r\n$5\r\n@read\r\n$5\r\n@slow\r\n*1\r\n$23\r\nnondeterministic_out"
    "put\r\n*1\r\n*6\r\n$5\r\nflags\r\n*1\r\n$2\r\nRO\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntyp"
    "e\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:2\r\n$9\r\nfind_keys\r\n*4\r\n$4\r"
    "\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r"
    "\n$5\r\nlimit\r\n:0\r\n*0\r\n*10\r\n$11\r\nobject|help\r\n:2\r\n*2\r\n$7\r\nloading\r\n$5"
    "\r\nstale\r\n:0\r\n:0\r\n:0\r\n*2\r\n$9\r\n@keyspace\r\n$5\r\n@slow\r\n*0\r\n*0\r\n*0\r\n*"
    "10\r\n$11\r\nobject|freq\r\n:3\r\n*1\r\n$8\r\nreadonly\r\n:2\r\n:2\r\n:1\r\n*3\r\n$9\r\n@k"
    "eyspace\r\n$5\r\n@read\r\n$5\r\n@slow\r\n*1\r\n$23\r\nnondeterministic_output\r\n*1\r\n*6"
    "\r\n$5\r\nflags\r\n*1\r\n$2\r\nRO\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\ninde"
    "x\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:2\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r"
    "\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r"
    "\n:0\r\n*0\r\n*10\r\n$15\r\nobject|encoding\r\n:3\r\n*1\r\n$8\r\nreadonly\r\n:2\r\n:2\r\n:"
    "1\r\n*3\r\n$9\r\n@keyspace\r\n$5\r\n@read\r\n$5\r\n@slow\r\n*1\r\n$23\r\nnondeterministic_"
    "output\r\n*1\r\n*6\r\n$5\r\nflags\r\n*1\r\n$2\r\nRO\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\n"
    "type\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:2\r\n$9\r\nfind_keys\r\n*4\r\n$"
    "4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1"
    "\r\n$5\r\nlimit\r\n:0\r\n*0\r\n*10\r\n$15\r\nobject|refcount\r\n:3\r\n*1\r\n$8\r\nreadonly"
    "\r\n:2\r\n:2\r\n:1\r\n*3\r\n$9\r\n@keyspace\r\n$5\r\n@read\r\n$5\r\n@slow\r\n*1\r\n$23\r\n"
    "nondeterministic_output\r\n*1\r\n*6\r\n$5\r\nflags\r\n*1\r\n$2\r\nRO\r\n$12\r\nbegin_searc"
    "h\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:2\r\n$9\r\nfin"
    "d_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7"
    "\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n*10\r\n$4\r\nsort\r\n:-2\r\n*3\r\n$5\r\nwr"
    "ite\r\n$7\r\ndenyoom\r\n$11\r\nmovablekeys\r\n:1\r\n:1\r\n:1\r\n*6\r\n$6\r\n@write\r\n$4\r"
    "\n@set\r\n$10\r\n@sortedset\r\n$5\r\n@list\r\n$5\r\n@slow\r\n$10\r\n@dangerous\r\n*0\r\n*3"
    "\r\n*6\r\n$5\r\nflags\r\n*2\r\n$2\r\nRO\r\n$6\r\naccess\r\n$12\r\nbegin_search\r\n*4\r\n$4"
    "\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4"
    "\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep"
    "\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*8\r\n$5\r\nnotes\r\n$120\r\nFor the optional BY/GET keywor"
    "d. It is marked 'unknown' because the key names derive from the content of the key we sort"
    "\r\n$5\r\nflags\r\n*2\r\n$2\r\nRO\r\n$6\r\naccess\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\nty"
    "pe\r\n$7\r\nunknown\r\n$4\r\nspec\r\n*0\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$7\r\nun"
    "known\r\n$4\r\nspec\r\n*0\r\n*8\r\n$5\r\nnotes\r\n$116\r\nFor the optional STORE keyword. "
    "It is marked 'unknown' because the keyword can appear anywhere in the argument array\r\n$5"
    "\r\nflags\r\n*2\r\n$2\r\nOW\r\n$6\r\nupdate\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n"
    "$7\r\nunknown\r\n$4\r\nspec\r\n*0\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$7\r\nunknown"
    "\r\n$4\r\nspec\r\n*0\r\n*0\r\n*10\r\n$4\r\nmset\r\n:-3\r\n*2\r\n$5\r\nwrite\r\n$7\r\ndenyo"
    "om\r\n:1\r\n:-1\r\n:2\r\n*3\r\n$6\r\n@write\r\n$7\r\n@string\r\n$5\r\n@slow\r\n*2\r\n$26\r"
    "\nrequest_policy:multi_shard\r\n$29\r\nresponse_policy:all_succeeded\r\n*1\r\n*6\r\n$5\r\n"
    "flags\r\n*2\r\n$2\r\nOW\r\n$6\r\nupdate\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r"
    "\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r"
    "\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:-1\r\n$7\r\nkeystep\r\n:2\r\n$5\r\n"
    "limit\r\n:0\r\n*0\r\n*10\r\n$11\r\nzunionstore\r\n:-4\r\n*3\r\n$5\r\nwrite\r\n$7\r\ndenyoo"
    "m\r\n$11\r\nmovablekeys\r\n:1\r\n:1\r\n:1\r\n*3\r\n$6\r\n@write\r\n$10\r\n@sortedset\r\n$5"
    "\r\n@slow\r\n*0\r\n*2\r\n*6\r\n$5\r\nflags\r\n*2\r\n$2\r\nOW\r\n$6\r\nupdate\r\n$12\r\nbeg"
    "in_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$"
    "9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n"
    ":0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*6\r\n$5\r\nflags\r\n*2\r\n$2\r\nRO\r\n$"
    "6\r\naccess\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2"
    "\r\n$5\r\nindex\r\n:2\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$6\r\nkeynum\r\n$4\r\nspec"
    "\r\n*6\r\n$9\r\nkeynumidx\r\n:0\r\n$8\r\nfirstkey\r\n:1\r\n$7\r\nkeystep\r\n:1\r\n*0\r\n*1"
    "0\r\n$3\r\nset\r\n:-3\r\n*2\r\n$5\r\nwrite\r\n$7\r\ndenyoom\r\n:1\r\n:1\r\n:1\r\n*3\r\n$6"
    "\r\n@write\r\n$7\r\n@string\r\n$5\r\n@slow\r\n*0\r\n*1\r\n*8\r\n$5\r\nnotes\r\n$48\r\nRW a"
    "nd ACCESS due to the optional `GET` argument\r\n$5\r\nflags\r\n*4\r\n$2\r\nRW\r\n$6\r\nacc"
    "ess\r\n$6\r\nupdate\r\n$14\r\nvariable_flags\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r"
    "\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\nt"
    "ype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5"
    "\r\nlimit\r\n:0\r\n*0\r\n*10\r\n$4\r\nping\r\n:-1\r\n*1\r\n$4\r\nfast\r\n:0\r\n:0\r\n:0\r"
    "\n*2\r\n$5\r\n@fast\r\n$11\r\n@connection\r\n*2\r\n$25\r\nrequest_policy:all_shards\r\n$29"
    "\r\nresponse_policy:all_succeeded\r\n*0\r\n*0\r\n*10\r\n$5\r\nxread\r\n:-4\r\n*3\r\n$8\r\n"
    "readonly\r\n$8\r\nblocking\r\n$11\r\nmovablekeys\r\n:0\r\n:0\r\n:0\r\n*4\r\n$5\r\n@read\r"
    "\n$7\r\n@stream\r\n$5\r\n@slow\r\n$9\r\n@blocking\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r"
    "\n$2\r\nRO\r\n$6\r\naccess\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$7\r\nkeyword\r\n"
    "$4\r\nspec\r\n*4\r\n$7\r\nkeyword\r\n$7\r\nSTREAMS\r\n$9\r\nstartfrom\r\n:1\r\n$9\r\nfind_"
    "keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:-1\r\n$7"
    "\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:2\r\n*0\r\n*10\r\n$9\r\ngeoradius\r\n:-6\r\n*3\r\n$5"
    "\r\nwrite\r\n$7\r\ndenyoom\r\n$11\r\nmovablekeys\r\n:1\r\n:1\r\n:1\r\n*3\r\n$6\r\n@write\r"
    "\n$4\r\n@geo\r\n$5\r\n@slow\r\n*0\r\n*3\r\n*6\r\n$5\r\nflags\r\n*2\r\n$2\r\nRO\r\n$6\r\nac"
    "cess\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r"
    "\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r"
    "\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*6\r\n$5\r\nflags\r\n"
    "*2\r\n$2\r\nOW\r\n$6\r\nupdate\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$7\r\nkeyword"
    "\r\n$4\r\nspec\r\n*4\r\n$7\r\nkeyword\r\n$5\r\nSTORE\r\n$9\r\nstartfrom\r\n:6\r\n$9\r\nfin"
    "d_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7"
    "\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*6\r\n$5\r\nflags\r\n*2\r\n$2\r\nOW\r\n$6\r\nupd"
    "ate\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$7\r\nkeyword\r\n$4\r\nspec\r\n*4\r\n$7"
    "\r\nkeyword\r\n$9\r\nSTOREDIST\r\n$9\r\nstartfrom\r\n:6\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\n"
    "type\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$"
    "5\r\nlimit\r\n:0\r\n*0\r\n*10\r\n$4\r\neval\r\n:-3\r\n*5\r\n$8\r\nnoscript\r\n$5\r\nstale"
    "\r\n$12\r\nskip_monitor\r\n$17\r\nno_mandatory_keys\r\n$11\r\nmovablekeys\r\n:0\r\n:0\r\n:"
    "0\r\n*2\r\n$5\r\n@slow\r\n$10\r\n@scripting\r\n*0\r\n*1\r\n*8\r\n$5\r\nnotes\r\n$78\r\nWe "
    "cannot tell how the keys will be used so we assume the worst, RW and UPDATE\r\n$5\r\nflags"
    "\r\n*3\r\n$2\r\nRW\r\n$6\r\naccess\r\n$6\r\nupdate\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\nt"
    "ype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:2\r\n$9\r\nfind_keys\r\n*4\r\n$4"
    "\r\ntype\r\n$6\r\nkeynum\r\n$4\r\nspec\r\n*6\r\n$9\r\nkeynumidx\r\n:0\r\n$8\r\nfirstkey\r"
    "\n:1\r\n$7\r\nkeystep\r\n:1\r\n*0\r\n";

static redisReply *parse(const char *resp, size_t n)
{
    redisReader *r = redisReaderCreate();
    void *reply = NULL;

    if (r && redisReaderFeed(r, resp, n) == REDIS_OK)
        (void)redisReaderGetReply(r, &reply);
    redisReaderFree(r);
    return reply;
}

/* The keys are the arguments that start with 'k' */
static bool owned_not_k(void *ud, const char *key, size_t n)
{
    (void)ud;
    return !(n && key[0] == 'k');
}

/* The index of the first argument found as a key when every key is
 * foreign, in a command given as words split on spaces. */
static ssize_t first_key(const rp_keys *t, const char *cmd)
{
    static char buf[256];
    kv_arg av[32];
    size_t argc = 0;
    const rp_cmdinfo *ci;

    snprintf(buf, sizeof(buf), "%s", cmd);
    for (char *w = strtok(buf, " "); w && argc < 32; w = strtok(NULL, " "))
        av[argc++] = (kv_arg){w, strlen(w)};
    ci = rp_keys_lookup(t, argc, av);
    if (!ci)
        return -100;
    return rp_keys_first_foreign(ci, argc, av, owned_not_k, NULL);
}

TEST(positions)
{
    const kv_arg ping = {"ping", 4}, flush = {"FLUSHALL", 8};
    redisReply *rep = parse(COMMANDS, sizeof(COMMANDS) - 1);
    rp_keys t;
    dpr_err err = DPR_ERR_INIT;

    CHECK(rep != NULL);
    CHECK_EQ_INT(rp_keys_load(&t, rep, &err), 0);
    CHECK(t.n > 12); /* OBJECT's subcommands too */
    CHECK_EQ_INT(first_key(&t, "GET k"), 1);
    CHECK_EQ_INT(first_key(&t, "get a"), -1);
    CHECK_EQ_INT(first_key(&t, "SET a 1"), -1);
    CHECK_EQ_INT(first_key(&t, "MSET a k b k2"), -1); /* values are not keys */
    CHECK_EQ_INT(first_key(&t, "MSET a 1 b 2 k 3"), 5);
    /* movable keys: counted by an argument */
    CHECK_EQ_INT(first_key(&t, "EVAL s 2 a k1 karg"), 4);
    CHECK_EQ_INT(first_key(&t, "EVAL s 1 a k1"), -1);
    CHECK_EQ_INT(first_key(&t, "EVAL s 0 kx"), -1);
    CHECK_EQ_INT(first_key(&t, "EVAL s x kx"), -1); /* Redis refuses it */
    CHECK_EQ_INT(first_key(&t, "EVAL s 99 kx"), -1); /* more than given: Redis refuses */
    CHECK_EQ_INT(first_key(&t, "ZUNIONSTORE kd 2 a b"), 1);
    CHECK_EQ_INT(first_key(&t, "ZUNIONSTORE d 2 a kb WEIGHTS 1 2"), 4);
    CHECK_EQ_INT(first_key(&t, "ZUNIONSTORE d 1 a kb"), -1);
    CHECK_EQ_INT(first_key(&t, "LMPOP 2 a kb LEFT"), 3);
    /* after a keyword, half of what follows */
    CHECK_EQ_INT(first_key(&t, "XREAD COUNT 2 STREAMS a kb 0 0"), 5);
    CHECK_EQ_INT(first_key(&t, "XREAD STREAMS a b k1 k2"), -1);
    CHECK_EQ_INT(first_key(&t, "GEORADIUS a 1 2 3 m STORE kx"), 7);
    CHECK_EQ_INT(first_key(&t, "SORT ka BY x"), 1);
    const kv_arg sort = {"sort", 4};
    CHECK(rp_keys_lookup(&t, 1, &sort)->unknown); /* STORE's key: unknown */
    CHECK(!rp_keys_lookup(&t, 1, &flush)->unknown);
    /* subcommands */
    CHECK_EQ_INT(first_key(&t, "OBJECT ENCODING k"), 2);
    CHECK_EQ_INT(first_key(&t, "object encoding a"), -1);
    CHECK_EQ_INT(first_key(&t, "OBJECT NOSUCH k"), -100);
    CHECK_EQ_INT(first_key(&t, "NOSUCH k"), -100);
    CHECK_EQ_INT(first_key(&t, "PING"), -1);
    CHECK_EQ_INT(first_key(&t, "GET"), -1); /* a wrong argument count: no key */

    CHECK(!rp_keys_lookup(&t, 1, &ping)->write);
    CHECK(rp_keys_lookup(&t, 1, &flush)->write);
    /* what may change the data (the proxy's read-only test) */
    const kv_arg get = {"get", 3}, eval = {"EVAL", 4};
    CHECK(!rp_keys_lookup(&t, 1, &ping)->may_write);
    CHECK(!rp_keys_lookup(&t, 1, &get)->may_write);
    CHECK(rp_keys_lookup(&t, 1, &flush)->may_write);
    CHECK(rp_keys_lookup(&t, 1, &eval)->may_write); /* neither "write" nor "readonly" */
    CHECK_EQ_INT((int)rp_keys_lookup(&t, 1, &flush)->nspecs, 0);
    rp_keys_free(&t);
    freeReplyObject(rep);
}

TEST(bad_tables)
{
    static const char *const bad[] = {
        "+OK\r\n",
        "*0\r\n",
        "*1\r\n:1\r\n",
        "*1\r\n*2\r\n$3\r\nget\r\n:2\r\n",
        /* a key spec without find_keys */
        "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*0\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n"
        "*1\r\n*2\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n"
        "*2\r\n$5\r\nindex\r\n:1\r\n*0\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        redisReply *rep = parse(bad[i], strlen(bad[i]));
        rp_keys t;
        dpr_err err = DPR_ERR_INIT;
        CHECK(rep != NULL);
        CHECK_EQ_INT(rp_keys_load(&t, rep, &err), -EPROTO);
        CHECK(strstr(err.msg, "COMMAND") != NULL);
        CHECK_EQ_INT((int)t.cap, 0);
        freeReplyObject(rep);
    }
}

static bool owned_by(void *ud, const char *key, size_t n)
{
    return kv_layout_owns(ud, key, n);
}

/* What the proxy adds to every command under a layout: the lookup and the
 * owner of each key (printed, not checked: docs/dpr-redis.md quotes it). */
TEST(hot_path_cost)
{
    redisReply *rep = parse(COMMANDS, sizeof(COMMANDS) - 1);
    char *addrs[3] = {"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"};
    kv_layout l = {1, 0, 3, addrs};
    rp_keys t;
    char key[32];
    kv_arg av[3] = {{"SET", 3}, {key, 0}, {"value", 5}};
    size_t owned = 0, n = 2000000, sum = 0;
    uint64_t t0, base;

    CHECK_EQ_INT(rp_keys_load(&t, rep, NULL), 0);
    t0 = dpr_mono_ns(); /* the key formatting alone, subtracted */
    for (size_t i = 0; i < n; i++)
        sum += (size_t)snprintf(key, sizeof(key), "key:%012zu", i % 100000) + (size_t)key[5];
    base = dpr_mono_ns() - t0;
    CHECK(sum > 0);
    t0 = dpr_mono_ns();
    for (size_t i = 0; i < n; i++) {
        av[1].n = (size_t)snprintf(key, sizeof(key), "key:%012zu", i % 100000);
        const rp_cmdinfo *ci = rp_keys_lookup(&t, 3, av);
        owned += rp_keys_first_foreign(ci, 3, av, owned_by, &l) < 0;
    }
    printf("rp_keys: SET <16-byte key> under a 3-shard layout: %.0f ns per command (lookup, "
           "key positions, owner)\n", (double)(dpr_mono_ns() - t0 - base) / (double)n);
    CHECK(owned > n / 5 && owned < n / 2); /* about a third */
    rp_keys_free(&t);
    freeReplyObject(rep);
}

int main(void)
{
    RUN(positions);
    RUN(bad_tables);
    RUN(hot_path_cost);
    return check_summary("test_rp_keys");
}
