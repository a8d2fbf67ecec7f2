# libdpr/build.mk - libdpr: wire format, worker and session sides, routing,
# the C client. Public headers: libdpr/include/dpr/ (the whole API); only the
# symbols they declare with DPR_EXPORT leave libdpr.so (nm -D).
#
# Included by the top-level Makefile. libdpr.a carries the base layer's
# objects too, so that users of the installed static library need nothing
# else.

LIBDPR_SRC = $(sort $(wildcard libdpr/src/*.c))
LIBDPR_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(LIBDPR_SRC))
LIBDPR_A = $(BUILD)/libdpr.a
# libdpr.so.0 (the SONAME: bump it when the ABI breaks) and the libdpr.so
# link that -ldpr and the Python package's source-tree lookup find
LIBDPR_SONAME = libdpr.so.0
LIBDPR_SO = $(BUILD)/libdpr.so
LIBDPR_PKGS = hiredis openssl
LIBDPR_LIBS := $(call pkg_libs,$(LIBDPR_PKGS))
# hiredis' headers: libdpr's, and every component's that speaks RESP
CPPFLAGS += $(call pkg_cflags,hiredis)

$(BUILD)/obj/libdpr/%.o: CPPFLAGS += -Ilibdpr/src
# unit tests of private modules (endpoints.h) see libdpr/src too
$(BUILD)/obj/tests/libdpr/%.o: CPPFLAGS += -Ilibdpr/src

$(LIBDPR_A): $(LIBDPR_OBJ) $(patsubst %.c,$(BUILD)/obj/%.o,$(COMMON_SRC))
	@rm -f $@
	ar rcs $@ $^

# The shared library is what the Python package loads (ctypes).
$(BUILD)/$(LIBDPR_SONAME): $(LIBDPR_OBJ) $(COMMON_A)
	$(CC) -shared $(LDFLAGS) -Wl,-soname,$(LIBDPR_SONAME) -o $@ $(LIBDPR_OBJ) $(COMMON_A) \
		$(LIBDPR_LIBS) -lm
$(LIBDPR_SO): $(BUILD)/$(LIBDPR_SONAME)
	ln -sfn $(LIBDPR_SONAME) $@

# unit tests (tests/libdpr/test_*.c) and the C client's driver for
# tests/libdpr/test_client*.py (not a unit test: it needs dpr-kv; it finds
# clusters by DNS-SD too, so libdpr/discover/build.mk links it)
UNIT_BINS += $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/libdpr/test_*.c))
CLIENT_DRIVER = $(BUILD)/tests/client-driver

$(BUILD)/tests/libdpr/test_%: $(BUILD)/obj/tests/libdpr/test_%.o $(LIBDPR_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBDPR_LIBS) $(COMMON_LIBS) -lm -lpthread

# fuzz targets: fuzz_wire (batch headers), fuzz_endpoints (DPR.CLUSTER.ENDPOINTS
# answers through hiredis' reader), fuzz_client_endpoint (HOST:PORT[@WORKER]),
# fuzz_cutreply (the cuts in DPR.SYNC and DPR.PREFIX answers)
LIBDPR_FUZZ = build/fuzz/fuzz_wire build/fuzz/fuzz_endpoints build/fuzz/fuzz_client_endpoint \
              build/fuzz/fuzz_cutreply
FUZZ_BINS += $(LIBDPR_FUZZ)
$(LIBDPR_FUZZ): build/fuzz/%: tests/libdpr/%.c $(LIBDPR_SRC) $(COMMON_SRC)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -Ilibdpr/src -Itests/lib $(FUZZ_CFLAGS) -o $@ $^ $(LIBDPR_LIBS) \
		$(COMMON_LIBS) -lm
