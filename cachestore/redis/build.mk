# cachestore/redis/build.mk - dpr-redis: an unmodified redis-server behind a
# DPR proxy (docs/dpr-redis.md). Links dpr-kv's modules (libdprkv.a: the
# settings, the finder link, the request parser) and adds its own.

REDISPROXY_SRC = $(sort $(wildcard cachestore/redis/*.c))
RP_BIN = $(BUILD)/dpr-redis

$(BUILD)/obj/cachestore/redis/%.o: CPPFLAGS += -Icachestore/src -Icachestore/redis
$(BUILD)/obj/tests/cachestore/fuzz_rp_%.o: CPPFLAGS += -Icachestore/redis

$(RP_BIN): $(patsubst %.c,$(BUILD)/obj/%.o,$(REDISPROXY_SRC)) $(KV_A) $(LIBDPR_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(KV_LIBS)

build/fuzz/fuzz_rp_%: tests/cachestore/fuzz_rp_%.c cachestore/redis/rp_%.c
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -Icachestore/redis $(FUZZ_CFLAGS) -o $@ $^

# the command table's reader: hiredis' reader, common's numbers and errors
build/fuzz/fuzz_rp_keys: tests/cachestore/fuzz_rp_keys.c cachestore/redis/rp_keys.c \
		$(COMMON_SRC)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -Icachestore/src -Icachestore/redis $(FUZZ_CFLAGS) -o $@ $^ $(KV_LIBS)

# the pure module's unit suite (linking only it: it needs nothing else)
$(BUILD)/obj/tests/cachestore/test_rp_%.o: CPPFLAGS += -Icachestore/redis -Icachestore/src
$(BUILD)/tests/cachestore/test_rp_reply: $(BUILD)/obj/tests/cachestore/test_rp_reply.o \
		$(BUILD)/obj/cachestore/redis/rp_reply.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^
$(BUILD)/tests/cachestore/test_rp_keys: $(BUILD)/obj/tests/cachestore/test_rp_keys.o \
		$(BUILD)/obj/cachestore/redis/rp_keys.o $(KV_A) $(LIBDPR_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(KV_LIBS)
