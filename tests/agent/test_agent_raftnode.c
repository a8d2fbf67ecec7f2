/* test_agent_raftnode.c - the pure part of the Raft member (raftnode.h):
 * the snapshot threshold that follows the log's bytes. */
#include "check.h"
#include "raftnode.h"

TEST(threshold_follows_the_bytes)
{
    /* 26 KB finder entries: about 2580 entries make 64 MiB */
    unsigned t = 4096;
    for (int i = 0; i < 20; i++)
        t = agent_raft_tune_threshold(t, 1000ull * 26000, 1000);
    CHECK(t > 2400 && t < 2700);
    /* barriers only (a few bytes each): the most entries allowed */
    t = 4096;
    for (int i = 0; i < 30; i++)
        t = agent_raft_tune_threshold(t, 0, 2000);
    CHECK(t > 250000 && t <= 262144);
    /* huge entries: never below the least */
    t = 4096;
    for (int i = 0; i < 30; i++)
        t = agent_raft_tune_threshold(t, 100ull << 30, 100);
    CHECK(t >= 1024 && t < 1100);
}

TEST(one_second_moves_it_halfway_and_few_entries_not_at_all)
{
    CHECK_EQ_INT((int)agent_raft_tune_threshold(4096, 0, 10), 4096);
    CHECK_EQ_INT((int)agent_raft_tune_threshold(4096, 0, 64), (4096 + 262144) / 2);
}

int main(void)
{
    RUN(threshold_follows_the_bytes);
    RUN(one_second_moves_it_halfway_and_few_entries_not_at_all);
    return check_summary("raftnode");
}
