/* test_finders.c - a cluster's finder addresses and its redirects
 * (common/finders.h). */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "common/finders.h"

static int on_error(dpr_finders *f, const char *text)
{
    return (int)dpr_finders_on_error(f, text, strlen(text));
}

TEST(parse)
{
    dpr_finders f;
    dpr_err err = DPR_ERR_INIT;

    CHECK_EQ_INT(dpr_finders_parse("10.0.0.1:7000", &f, NULL), 0);
    CHECK(f.n == 1 && strcmp(dpr_finders_text(&f), "10.0.0.1:7000") == 0);
    CHECK_EQ_INT(dpr_finders_parse("10.0.0.1:7000, [fd00::2]:7000 ,node3:7001", &f, NULL), 0);
    CHECK(f.n == 3 && f.list[1].port == 7000 && strcmp(f.list[1].host, "fd00::2") == 0);
    CHECK(strcmp(f.list[2].host, "node3") == 0 && f.list[2].port == 7001);
    CHECK_EQ_INT(dpr_finders_parse("", &f, &err), -EINVAL);
    CHECK_EQ_INT(dpr_finders_parse("10.0.0.1:7000,", &f, &err), -EINVAL);
    CHECK(strstr(err.msg, "finder address 2") != NULL);
    CHECK_EQ_INT(dpr_finders_parse("10.0.0.1", &f, NULL), -EINVAL);
    CHECK_EQ_INT(dpr_finders_parse("a:1,a:1,a:1,a:1,a:1,a:1,a:1,a:1,a:1,a:1,a:1,a:1,a:1,a:1,"
                                   "a:1,a:1,a:1", &f, &err), -EINVAL);
}

TEST(next_goes_round_the_list)
{
    dpr_finders f;

    CHECK_EQ_INT(dpr_finders_parse("a:1,b:2,c:3", &f, NULL), 0);
    dpr_finders_next(&f);
    CHECK(strcmp(dpr_finders_text(&f), "b:2") == 0);
    dpr_finders_next(&f);
    dpr_finders_next(&f);
    CHECK(strcmp(dpr_finders_text(&f), "a:1") == 0);
}

TEST(notleader_is_followed_and_left_on_failure)
{
    dpr_finders f;

    CHECK_EQ_INT(dpr_finders_parse("a:1,b:2,c:3", &f, NULL), 0);
    CHECK_EQ_INT(on_error(&f, "NOTLEADER 10.0.0.9:7000"), DPR_FINDERS_MOVED);
    CHECK(strcmp(dpr_finders_text(&f), "10.0.0.9:7000") == 0);
    CHECK(dpr_finders_current(&f)->port == 7000);
    /* the leader is unreachable: back to the list where it was */
    dpr_finders_next(&f);
    CHECK(strcmp(dpr_finders_text(&f), "a:1") == 0);
}

TEST(tryagain_and_endless_redirects_pause)
{
    dpr_finders f;

    CHECK_EQ_INT(dpr_finders_parse("a:1,b:2", &f, NULL), 0);
    CHECK_EQ_INT(on_error(&f, "TRYAGAIN no finder: no raft leader"), DPR_FINDERS_RETRY);
    CHECK(strcmp(dpr_finders_text(&f), "b:2") == 0);
    for (int i = 0; i < DPR_FINDERS_MAX_HOPS; i++)
        CHECK_EQ_INT(on_error(&f, "NOTLEADER x:1"), DPR_FINDERS_MOVED);
    CHECK_EQ_INT(on_error(&f, "NOTLEADER x:1"), DPR_FINDERS_RETRY);
    /* an answer resets the count */
    CHECK_EQ_INT(on_error(&f, "NOTLEADER x:1"), DPR_FINDERS_MOVED);
    dpr_finders_answered(&f);
    for (int i = 0; i < DPR_FINDERS_MAX_HOPS; i++)
        CHECK_EQ_INT(on_error(&f, "NOTLEADER x:1"), DPR_FINDERS_MOVED);
}

TEST(other_errors_are_the_finders_own)
{
    dpr_finders f;

    CHECK_EQ_INT(dpr_finders_parse("a:1", &f, NULL), 0);
    CHECK_EQ_INT(on_error(&f, "ERR unknown domain 'kv'"), DPR_FINDERS_OTHER);
    CHECK_EQ_INT(on_error(&f, "NOTLEADERS x:1"), DPR_FINDERS_OTHER);
    CHECK_EQ_INT(on_error(&f, "TRYAGAINx"), DPR_FINDERS_OTHER);
    /* a garbled address is not followed */
    CHECK_EQ_INT(on_error(&f, "NOTLEADER"), DPR_FINDERS_RETRY);
    CHECK_EQ_INT(on_error(&f, "NOTLEADER no-port"), DPR_FINDERS_RETRY);
    CHECK(strcmp(dpr_finders_text(&f), "a:1") == 0);
}

int main(void)
{
    RUN(parse);
    RUN(next_goes_round_the_list);
    RUN(notleader_is_followed_and_left_on_failure);
    RUN(tryagain_and_endless_redirects_pause);
    RUN(other_errors_are_the_finders_own);
    return check_summary("finders");
}
