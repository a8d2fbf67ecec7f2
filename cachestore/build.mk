# cachestore/build.mk - dpr-kv, the Redis-protocol DPR cache-store.
# Private headers: cachestore/src/ (on this component's include path only).
#
# Included by the top-level Makefile. dpr-kv's modules except kv_main.c go
# into $(KV_A), which the unit tests link; the fuzz targets compile the same
# sources with clang's fuzzing flags.

CACHESTORE_SRC = $(sort $(wildcard cachestore/src/*.c))
KV_A = $(BUILD)/libdprkv.a
KV_BIN = $(BUILD)/dpr-kv
KV_LIBS = $(LIBDPR_LIBS) $(COMMON_LIBS) -lm

$(BUILD)/obj/cachestore/%.o: CPPFLAGS += -Icachestore/src
$(BUILD)/obj/tests/cachestore/%.o: CPPFLAGS += -Icachestore/src

$(KV_A): $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out cachestore/src/kv_main.c,$(CACHESTORE_SRC)))
	@rm -f $@
	ar rcs $@ $^

# kv_config.c prints VERSION for --version
VALUE_OBJS += $(BUILD)/obj/cachestore/src/kv_config.o
$(KV_BIN): $(BUILD)/obj/cachestore/src/kv_main.o $(KV_A) $(LIBDPR_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(KV_LIBS)

UNIT_BINS += $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/cachestore/test_*.c))

$(BUILD)/tests/cachestore/test_%: $(BUILD)/obj/tests/cachestore/test_%.o $(KV_A) $(LIBDPR_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(KV_LIBS)

# dpr-kv's parsers
FUZZ_BINS += $(patsubst tests/cachestore/%.c,build/fuzz/%,$(wildcard tests/cachestore/fuzz_*.c))
build/fuzz/fuzz_kv_%: tests/cachestore/fuzz_kv_%.c $(LIBDPR_SRC) $(COMMON_SRC) \
		$(filter-out cachestore/src/kv_main.c,$(CACHESTORE_SRC))
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -Icachestore/src -Ilibdpr/src -Itests/lib $(FUZZ_CFLAGS) -o $@ $^ $(KV_LIBS)
$(BUILD)/obj/cachestore/src/kv_redis.o: CPPFLAGS += -Ilibdpr/src
