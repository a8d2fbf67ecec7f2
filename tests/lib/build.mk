# tests/lib/build.mk - test tools that are programs: lazyfs, the FUSE file
# system of the power-loss tests (tests/lib/lazyfs.c; libfuse3, Debian's
# libfuse3-dev; running it needs /dev/fuse and root).
#
# Included by the top-level Makefile; `make` (all) builds it.

LAZYFS_BIN = $(BUILD)/tests/lazyfs
LAZYFS_CFLAGS := $(call pkg_cflags,fuse3)
LAZYFS_LIBS := $(call pkg_libs,fuse3)

$(BUILD)/obj/tests/lib/lazyfs.o: CPPFLAGS += $(LAZYFS_CFLAGS)

$(LAZYFS_BIN): $(BUILD)/obj/tests/lib/lazyfs.o $(COMMON_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LAZYFS_LIBS) $(COMMON_LIBS)

all: $(LAZYFS_BIN)
