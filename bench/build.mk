# bench/build.mk - the benchmarks' programs (not tests): bench-finder (the
# finder in-process and over TCP) and dpr-bench (the load generator for
# dpr-kv and Redis), sharing hist.c (latency histograms). The scripts
# bench/finder.sh and bench/kv.sh run them.
#
# Included by the top-level Makefile.

BENCH_FINDER = $(BUILD)/bench-finder
DPR_BENCH = $(BUILD)/dpr-bench

$(BUILD)/obj/bench/bench_finder.o: CPPFLAGS += -Ifinder/include

$(BENCH_FINDER): $(BUILD)/obj/bench/bench_finder.o $(BUILD)/obj/bench/hist.o $(FINDER_A) $(LIBDPR_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(FINDER_LIBS)

$(DPR_BENCH): $(BUILD)/obj/bench/dpr_bench.o $(BUILD)/obj/bench/hist.o $(LIBDPR_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBDPR_LIBS) $(COMMON_LIBS) -lm -lpthread
