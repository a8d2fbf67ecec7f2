/* test_agent_replstore.c - the copies of other nodes' checkpoints
 * (replstore.h): receiving in pieces, resuming, checking size and CRC,
 * listing, pruning by the cut, dropping. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "common/bytes.h"
#include "replstore.h"

static char root[64];

static void make_root(void)
{
    snprintf(root, sizeof(root), "/tmp/dpr-test-replstore-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        exit(2);
    }
}

static void remove_root(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", root);
}

TEST(prunable)
{
    uint64_t v[] = { 3, 5, 8, 12 };

    CHECK_EQ_U64(agent_replstore_prunable(v, 4, 0), 0);  /* nothing at or below */
    CHECK_EQ_U64(agent_replstore_prunable(v, 4, 2), 0);
    CHECK_EQ_U64(agent_replstore_prunable(v, 4, 3), 0);  /* 3 is what a restore needs */
    CHECK_EQ_U64(agent_replstore_prunable(v, 4, 7), 1);  /* 5 stays, 3 goes */
    CHECK_EQ_U64(agent_replstore_prunable(v, 4, 8), 2);
    CHECK_EQ_U64(agent_replstore_prunable(v, 4, 100), 3);
    CHECK_EQ_U64(agent_replstore_prunable(v, 0, 100), 0);
}

TEST(receive_resume_finish)
{
    const char data[] = "0123456789abcdefghij";
    uint32_t crc = dpr_crc32(data, 20);
    uint64_t size;
    bool complete;
    uint64_t *v;
    size_t n;

    make_root();
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 7, 3, &size, &complete), 0);
    CHECK(size == 0 && !complete);
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 7, 3, 0, data, 8, &size), 0);
    CHECK_EQ_U64(size, 8);
    /* a resend at the wrong place is refused with what there is */
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 7, 3, 4, data + 4, 4, &size), -ESPIPE);
    CHECK_EQ_U64(size, 8);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 7, 3, &size, &complete), 0);
    CHECK(size == 8 && !complete);
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 7, 3, 8, data + 8, 12, &size), 0);
    /* not finished before it is whole, nor with another CRC */
    CHECK_EQ_INT(agent_replstore_finish(root, "kv", 7, 3, 21, crc), -EBADMSG);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 7, 3, &size, &complete), 0);
    CHECK(size == 0 && !complete); /* (the bad part was removed) */
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 7, 3, 0, data, 20, &size), 0);
    CHECK_EQ_INT(agent_replstore_finish(root, "kv", 7, 3, 20, crc), 0);
    CHECK_EQ_INT(agent_replstore_have(root, "kv", 7, 3, &size, &complete), 0);
    CHECK(size == 20 && complete);
    CHECK_EQ_INT(agent_replstore_finish(root, "kv", 7, 3, 20, crc), 0); /* (said twice) */
    CHECK_EQ_INT(agent_replstore_finish(root, "kv", 7, 4, 20, crc), -ENOENT);
    /* more versions; listing; pruning keeps the newest at or below the cut */
    for (uint64_t ver = 5; ver <= 9; ver += 2) {
        CHECK_EQ_INT(agent_replstore_put(root, "kv", 7, ver, 0, data, 20, &size), 0);
        CHECK_EQ_INT(agent_replstore_finish(root, "kv", 7, ver, 20, crc), 0);
    }
    CHECK_EQ_INT(agent_replstore_put(root, "kv", 7, 6, 0, data, 5, &size), 0); /* a part */
    CHECK_EQ_INT(agent_replstore_list(root, "kv", 7, &v, &n), 0);
    CHECK(n == 4 && v[0] == 3 && v[3] == 9);
    free(v);
    CHECK_EQ_INT(agent_replstore_prune(root, "kv", 7, 8), 3); /* 3, 5 and part 6 */
    CHECK_EQ_INT(agent_replstore_list(root, "kv", 7, &v, &n), 0);
    CHECK(n == 2 && v[0] == 7 && v[1] == 9);
    free(v);
    CHECK_EQ_INT(agent_replstore_list(root, "kv", 8, &v, &n), -ENOENT);
    CHECK_EQ_INT(agent_replstore_drop(root, "kv", 7), 0);
    CHECK_EQ_INT(agent_replstore_list(root, "kv", 7, &v, &n), -ENOENT);
    CHECK_EQ_INT(agent_replstore_drop(root, "kv", 7), 0); /* (missing is fine) */
    remove_root();
}

int main(void)
{
    RUN(prunable);
    RUN(receive_resume_finish);
    return check_summary("test_agent_replstore");
}
