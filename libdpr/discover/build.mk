# libdpr/discover/build.mk - libdpr-discover: finding a cluster by DNS-SD and
# a client of one of its deployments (public header dpr/discover.h; only its
# DPR_EXPORT functions leave libdpr-discover.so). A library of its own so
# that libdpr.so keeps needing hiredis only: this one needs avahi-client
# (mDNS through avahi-daemon) and glibc's libresolv (unicast DNS-SD), and
# libdpr for the client.
#
# Included by the top-level Makefile after libdpr/build.mk. libdpr-discover.a
# holds its own objects only: link it with -ldpr-discover -ldpr -lhiredis
# $(pkg-config --libs avahi-client) -lresolv.

DISCOVER_SRC = $(sort $(wildcard libdpr/discover/*.c))
DISCOVER_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(DISCOVER_SRC))
DISCOVER_A = $(BUILD)/libdpr-discover.a
DISCOVER_SONAME = libdpr-discover.so.0
DISCOVER_SO = $(BUILD)/libdpr-discover.so
DISCOVER_PKGS = avahi-client
DISCOVER_PKG_CFLAGS := $(call pkg_cflags,$(DISCOVER_PKGS))
DISCOVER_LIBS := $(call pkg_libs,$(DISCOVER_PKGS)) -lresolv

$(BUILD)/obj/libdpr/discover/%.o: CPPFLAGS += -Ilibdpr/discover $(DISCOVER_PKG_CFLAGS)

$(DISCOVER_A): $(DISCOVER_OBJ)
	@rm -f $@
	ar rcs $@ $^

# the base layer's objects go in too (libdpr.so hides its copy)
$(BUILD)/$(DISCOVER_SONAME): $(DISCOVER_OBJ) $(COMMON_A) $(LIBDPR_SO)
	$(CC) -shared $(LDFLAGS) -Wl,-soname,$(DISCOVER_SONAME) -o $@ $(DISCOVER_OBJ) $(COMMON_A) \
		-L$(BUILD) -ldpr $(DISCOVER_LIBS) $(LIBDPR_LIBS)
$(DISCOVER_SO): $(BUILD)/$(DISCOVER_SONAME)
	ln -sfn $(DISCOVER_SONAME) $@

# its unit suite (pure parsing: tests/libdpr/test_discover.c) sees the
# private header dnsrec.h
$(BUILD)/obj/tests/libdpr/test_discover.o: CPPFLAGS += -Ilibdpr/discover
$(BUILD)/tests/libdpr/test_discover: $(BUILD)/obj/tests/libdpr/test_discover.o $(DISCOVER_A) \
		$(LIBDPR_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(DISCOVER_LIBS) $(LIBDPR_LIBS) $(COMMON_LIBS) -lm -lpthread

# the C client's driver (libdpr/build.mk): shards, finders, agents or a
# cluster's name
$(CLIENT_DRIVER): $(BUILD)/obj/tests/libdpr/client_driver.o $(DISCOVER_A) $(LIBDPR_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(DISCOVER_LIBS) $(LIBDPR_LIBS) $(COMMON_LIBS) -lm

# the TXT and DNS answer parsers (dnsrec.c)
FUZZ_BINS += build/fuzz/fuzz_discover
build/fuzz/fuzz_discover: tests/libdpr/fuzz_discover.c libdpr/discover/dnsrec.c $(COMMON_SRC)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -Ilibdpr/discover -Itests/lib $(FUZZ_CFLAGS) -o $@ $^ -lresolv \
		$(COMMON_LIBS)
