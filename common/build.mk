# common/build.mk - the base layer every component links (docs/style.md):
# error text, logging, byte buffer, RESP writer, numbers, addresses, files,
# locks, clocks, libuv helpers, TLS (OpenSSL), the metrics writer and its HTTP
# endpoint (http-parser). Internal: its headers are not installed
# (except dpr/err.h, which is libdpr's public error type).
#
# Included by the top-level Makefile.

COMMON_SRC = $(sort $(wildcard common/src/*.c))
COMMON_A = $(BUILD)/libdprcommon.a
COMMON_PKGS = libuv libsystemd openssl zlib
# (Debian's libhttp-parser-dev ships no .pc file)
COMMON_LIBS := $(call pkg_libs,$(COMMON_PKGS)) -lhttp_parser
# every component includes the base layer's headers (uv.h, zlib.h)
CPPFLAGS += $(call pkg_cflags,$(COMMON_PKGS))

$(COMMON_A): $(patsubst %.c,$(BUILD)/obj/%.o,$(COMMON_SRC))
	@rm -f $@
	ar rcs $@ $^

UNIT_BINS += $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/common/test_*.c))

$(BUILD)/tests/common/test_%: $(BUILD)/obj/tests/common/test_%.o $(COMMON_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(COMMON_LIBS)

# Fuzz targets of the base layer's parsers (tests/common/fuzz_*.c).
FUZZ_BINS += $(patsubst tests/common/%.c,build/fuzz/%,$(wildcard tests/common/fuzz_*.c))
build/fuzz/fuzz_common_%: tests/common/fuzz_common_%.c $(COMMON_SRC)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -Itests/lib $(FUZZ_CFLAGS) -o $@ $^ $(COMMON_LIBS)
