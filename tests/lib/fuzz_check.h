/*
 * fuzz_check.h - what libFuzzer targets (tests/<component>/fuzz_*.c) share:
 * REQUIRE(cond) stops the run with a crash the fuzzer reports (and keeps the
 * input as a reproducer) when an invariant does not hold.
 */
#ifndef DPR_FUZZ_CHECK_H
#define DPR_FUZZ_CHECK_H

#define REQUIRE(c)                                                           \
    do {                                                                     \
        if (!(c))                                                            \
            __builtin_trap();                                                \
    } while (0)

#endif
