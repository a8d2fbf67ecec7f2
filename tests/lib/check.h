/*
 * check.h - the unit-test harness: one binary per suite, a TEST() per case.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_EQ_U64(a, b); }
 *   int main(void) { RUN(name); return check_summary("suite"); }
 *
 * A failed CHECK prints file:line and marks the current test failed; the
 * test goes on so one run shows every failure. check_summary() prints
 * "suite: N passed, N failed" and returns the exit status.
 */
#ifndef DPR_CHECK_H
#define DPR_CHECK_H

#include <inttypes.h>
#include <stdio.h>

static int check_passed, check_failed, check_cur_failed;

#define TEST(name) static void test_##name(void)

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__,        \
                    __LINE__, #cond);                                        \
            check_cur_failed = 1;                                            \
        }                                                                    \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                   \
    do {                                                                     \
        uint64_t check_a_ = (uint64_t)(a), check_b_ = (uint64_t)(b);         \
        if (check_a_ != check_b_) {                                          \
            fprintf(stderr, "  %s:%d: %s == %s failed: %" PRIu64             \
                    " != %" PRIu64 "\n", __FILE__, __LINE__, #a, #b,         \
                    check_a_, check_b_);                                     \
            check_cur_failed = 1;                                            \
        }                                                                    \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                   \
    do {                                                                     \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);      \
        if (check_a_ != check_b_) {                                          \
            fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n",      \
                    __FILE__, __LINE__, #a, #b, check_a_, check_b_);         \
            check_cur_failed = 1;                                            \
        }                                                                    \
    } while (0)

#define RUN(name)                                                            \
    do {                                                                     \
        check_cur_failed = 0;                                                \
        test_##name();                                                       \
        if (check_cur_failed) {                                              \
            check_failed++;                                                  \
            fprintf(stderr, "FAIL %s\n", #name);                             \
        } else {                                                             \
            check_passed++;                                                  \
            printf("ok   %s\n", #name);                                      \
        }                                                                    \
    } while (0)

static inline int check_summary(const char *suite)
{
    printf("%s: %d passed, %d failed\n", suite, check_passed, check_failed);
    fflush(stdout);
    return check_failed ? 1 : 0;
}

#endif
