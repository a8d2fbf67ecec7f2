# cachestore/build.mk - dpr-kv, the Redis-protocol DPR cache-store.
# Included by the top-level Makefile (uses its BUILD, CC, CPPFLAGS,
# ALL_CFLAGS, LDFLAGS, LIBS and LIBDPR_A; objects come from its
# $(BUILD)/obj/%.o rule). Alone: make -f Makefile -f cachestore/build.mk build/dpr-kv

CACHESTORE_SRC = $(sort $(wildcard cachestore/src/*.c))
KV_BIN = $(BUILD)/dpr-kv
KV_LIBS = -lsystemd

$(KV_BIN): $(patsubst %.c,$(BUILD)/obj/%.o,$(CACHESTORE_SRC)) $(BUILD)/libdpr.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(KV_LIBS)
