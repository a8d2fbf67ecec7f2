# DPR Cluster - top-level build.
#
#   make deps      install the Debian packages the project needs (root)
#   make           build libdpr, libdpr-discover, dpr-finder, dpr-kv, dpr-agent, tests,
#                  benchmarks
#   make test      run every test suite (tests/run.sh); ends "N passed, N failed"
#   make fuzz      run every libFuzzer target for FUZZ_SECONDS each
#   make bench     run the benchmarks (bench-finder, bench-kv, bench-resize, bench-raft,
#                  bench-raft-tls,
#                  bench-replication, bench-tls, bench-finder-metrics;
#                  as root also: make bench-placement, bench-discovery, bench-rollout)
#   make install   install into $(DESTDIR)$(PREFIX); make uninstall removes it
#   make deb       the Debian packages, in $(BUILD)/ (docs/packaging.md)
#   make demo      the main job: a cluster on a local systemd node (root)
#   make demo-cluster  three systemd nodes, a Raft leader's power cut (root)
#   make vm-test   three VMs of a Vagrant box, the .deb, a leader VM powered off
#                  (root, slow: not in `make test`; make vm-deps first)
#
# Objects go to $(BUILD) (build/ normally, build/asan for the sanitizer run).

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
# The version: the first line of debian/changelog, its one place
# (docs/packaging.md); the programs print it for --version.
VERSION := $(shell sed -n '1s/^[^(]*(\([^)]*\)).*/\1/p' debian/changelog)
DESTDIR ?=
BUILD ?= build
SAN ?= 0
FUZZ_SECONDS ?= 20
PYTHON ?= /usr/bin/python3
PY_VER := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
# Where Debian's /usr/bin/python3 finds packages for this PREFIX.
PYTHON_SITE ?= $(if $(filter /usr,$(PREFIX)),/usr/lib/python3/dist-packages,$(PREFIX)/lib/python$(PY_VER)/dist-packages)

CC ?= cc
CFLAGS ?= -O2 -g
WARN = -Wall -Wextra -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes \
       -Wno-unused-parameter -Werror=implicit-function-declaration \
       -Werror=incompatible-pointer-types -Werror=int-conversion
# Every component sees the base layer and libdpr's public headers; each
# component's own headers are added by its build.mk for its objects only.
CPPFLAGS += -D_GNU_SOURCE -Icommon/include -Ilibdpr/include
# Hidden by default: libdpr.so exports only what its headers mark DPR_EXPORT.
ALL_CFLAGS = -std=c11 -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) -MMD -MP
ifeq ($(SAN),1)
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 $(WARN)

# Libraries: every one that ships a .pc file gets its compile and link flags
# from pkg-config; each build.mk names the ones it uses, with
# $(call pkg_cflags,PKGS) and $(call pkg_libs,PKGS) (glibc's -lm, -lpthread,
# -lresolv stay as they are). make stops at once, naming what pkg-config lacks,
# unless the goals need no library (make deps installs them; the demos run
# make again after it).
PKG_CONFIG ?= pkg-config
PKGS = libuv libsystemd openssl zlib hiredis libconfig jansson raft liblz4 avahi-client \
       libnl-3.0 libnl-route-3.0 fuse3
PKGS_NOT_NEEDED_BY = deps deps-if-missing demo demo-cluster demo-finder clean uninstall
ifneq ($(filter-out $(PKGS_NOT_NEEDED_BY),$(or $(MAKECMDGOALS),all)),)
PKGS_MISSING := $(shell for p in $(PKGS); do $(PKG_CONFIG) --exists $$p 2>/dev/null || echo $$p; done)
ifneq ($(PKGS_MISSING),)
$(error pkg-config ($(PKG_CONFIG)) finds no $(PKGS_MISSING): install the development packages \
  (sudo make deps), or name their .pc files' directory in PKG_CONFIG_PATH)
endif
endif
pkg_cflags = $(shell $(PKG_CONFIG) --cflags $(1))
pkg_libs = $(shell $(PKG_CONFIG) --libs $(1))

DEB_PACKAGES = build-essential clang libclang-rt-14-dev pkg-config \
               libuv1-dev libhiredis-dev zlib1g-dev libsystemd-dev libhttp-parser-dev \
               libconfig-dev libjansson-dev libraft-dev liblz4-dev \
               libavahi-client-dev libnl-3-dev libnl-route-3-dev \
               systemd dbus avahi-daemon avahi-utils iproute2 util-linux iputils-ping python3-zeroconf \
               redis-server redis-tools python3 python3-pytest python3-redis python3-hiredis python3-yaml \
               python3-dnspython python3-prometheus-client knot bind9-dnsutils python3-setuptools python3-pip mypy \
               libfuse3-dev fuse3 \
               libssl-dev openssl python3-cryptography \
               debhelper dh-python lintian bash-completion

# Each component's build.mk adds its unit tests to UNIT_BINS and its fuzz
# targets to FUZZ_BINS. Order matters: later ones link earlier ones.
UNIT_BINS :=
FUZZ_BINS :=
VALUE_OBJS :=
include common/build.mk
include libdpr/build.mk
include libdpr/discover/build.mk
include finder/build.mk
include cachestore/build.mk
include cachestore/redis/build.mk
include agent/build.mk
include bench/build.mk
include tests/lib/build.mk

.PHONY: all deps test fuzz fuzz-build bench bench-finder clean
.DEFAULT_GOAL := all

all: $(LIBDPR_A) $(LIBDPR_SO) $(DISCOVER_A) $(DISCOVER_SO) $(FINDER_BIN) $(KV_BIN) $(RP_BIN) $(AGENT_BIN) $(UNIT_BINS) \
     $(BENCH_FINDER) $(DPR_BENCH) $(CLIENT_DRIVER)

# Installs the Debian packages the build, the tests and the demos need; with
# every one installed already it does nothing (no apt-get update, no network).
# $(call install-missing,TARGET,PACKAGES)
define install-missing
	@missing=$$(for p in $(2); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -z "$$missing" ]; then echo "make $(1): all $(words $(2)) packages are installed"; exit 0; fi; \
	echo "make $(1): installing" $$missing; \
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing
endef
deps:
	$(call install-missing,deps,$(DEB_PACKAGES))

# Objects are rebuilt when the compiler or its global flags change (a stale
# object built without -fvisibility=hidden would export private symbols).
FLAGS_STAMP = $(BUILD)/.flags
FLAGS_TEXT := $(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(LDFLAGS)
$(FLAGS_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(FLAGS_TEXT)' | cmp -s - $@ || echo '$(FLAGS_TEXT)' >$@
.PHONY: FORCE

# Values compiled into some objects (each build.mk adds its own to
# VALUE_OBJS): BINDIR (dpr-agent's default dpr-kv) and VERSION (--version,
# common/version.h). Those objects are rebuilt when the values change.
VALUES_STAMP = $(BUILD)/.values
VALUES_TEXT := BINDIR=$(BINDIR) VERSION=$(VERSION)
$(VALUES_STAMP): FORCE
	@mkdir -p $(BUILD)
	@echo '$(VALUES_TEXT)' | cmp -s - $@ || echo '$(VALUES_TEXT)' >$@
$(BUILD)/obj/tests/%.o: CPPFLAGS += -Itests/lib
$(BUILD)/obj/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

# (the demos' dependency: `make deps` costs nothing on a prepared machine)
.PHONY: deps-if-missing
deps-if-missing: deps

# --- tests ---------------------------------------------------------------
# tests/run.sh runs every suite and ends with the total "N passed, N failed".
test:
	$(MAKE) all
	$(MAKE) BUILD=build/asan SAN=1 CFLAGS="-O1 -g" $(patsubst $(BUILD)/%,build/asan/%,$(UNIT_BINS)) \
		build/asan/dpr-finder build/asan/dpr-kv build/asan/dpr-agent build/asan/tests/client-driver
	$(MAKE) fuzz-build
	BUILD=$(BUILD) PYTHON=$(PYTHON) FUZZ_SECONDS=$(FUZZ_SECONDS) tests/run.sh

# --- fuzzing (clang libFuzzer; each component's build.mk has its targets) ---
fuzz-build: $(FUZZ_BINS)

fuzz: fuzz-build
	tests/lib/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BINS)

# --- benchmarks (not tests) ------------------------------------------------
bench: bench-finder bench-kv bench-resize bench-raft bench-raft-tls bench-replication bench-tls \
       bench-finder-metrics

bench-finder: $(BENCH_FINDER) $(FINDER_BIN)
	bench/finder.sh $(BUILD)

.PHONY: bench-kv
bench-kv: $(DPR_BENCH) $(FINDER_BIN) $(KV_BIN) $(RP_BIN)
	bench/kv.sh $(BUILD)

# dpr-kv's plain port against its TLS port, redis-benchmark (bench/tls.sh)
.PHONY: bench-tls
bench-tls: $(FINDER_BIN) $(KV_BIN)
	bench/tls.sh $(BUILD)

# a resize of 1,000,000 keys from 3 to 4 shards (bench/resize.py)
.PHONY: bench-resize
bench-resize: $(FINDER_BIN) $(KV_BIN) $(LIBDPR_SO)
	/usr/bin/python3 bench/resize.py $(BUILD)

# the finder's metrics page at 2000 and 20000 workers (bench/finder_metrics.py)
.PHONY: bench-finder-metrics
bench-finder-metrics: $(FINDER_BIN)
	/usr/bin/python3 bench/finder_metrics.py $(BUILD)

# the finder of a 3-agent Raft cluster: bench-finder rows and failover (bench/raft.py)
.PHONY: bench-raft
bench-raft: $(BENCH_FINDER) $(FINDER_BIN) $(AGENT_BIN)
	/usr/bin/python3 bench/raft.py $(BUILD)

# the same with Raft over mutual TLS (bench/raft.py, BENCH_RAFT_TLS=1)
.PHONY: bench-raft-tls
bench-raft-tls: $(BENCH_FINDER) $(FINDER_BIN) $(AGENT_BIN)
	BENCH_RAFT_TLS=1 /usr/bin/python3 bench/raft.py $(BUILD)

# what copying checkpoints to another node costs commits (bench/replication.py)
.PHONY: bench-replication
bench-replication: $(DPR_BENCH) $(KV_BIN) $(AGENT_BIN)
	/usr/bin/python3 bench/replication.py $(BUILD)

# placement on three systemd nodes: apply 16 instances, a node lost and back
# (bench/placement.py; root)
.PHONY: bench-placement
bench-placement: all
	/usr/bin/python3 bench/placement.py $(BUILD)

# DNS-SD on three systemd nodes: instance ready -> visible on another node, and
# a shard move -> the session's first answered operation (bench/discovery.py; root)
.PHONY: bench-discovery
bench-discovery: all
	/usr/bin/python3 bench/discovery.py $(BUILD)

# a roll-out of 3 instances under a writing session: its stalls and total
# (bench/rollout.py; root)
.PHONY: bench-rollout
bench-rollout: all
	/usr/bin/python3 bench/rollout.py $(BUILD)

# --- Vagrant VMs (vagrant/, tests/vm/; docs/testing-clusters.md) -----------
# `make vm-deps`: what building the box, running the VMs and Vagrant with
# libvirt need (not in `make deps`: large, and only for these targets).
# `make vm-box`: the box, built once from Debian packages (vagrant/build-box.sh).
# `make vm-test`: three VMs of the box with the .deb (`make deb` when there is
# none), a cluster of agents, a session, the leader's VM powered off (root;
# minutes with TCG; VM_ACCEL=kvm where KVM guests boot).
VM_PACKAGES = vagrant vagrant-libvirt libvirt-daemon-system qemu-system-x86 qemu-utils \
              debootstrap dnsmasq-base fdisk openssh-client
VM_BOX = $(BUILD)/vagrant/box.img
.PHONY: vm-deps vm-box vm-test
vm-deps:
	$(call install-missing,vm-deps,$(VM_PACKAGES))

vm-box: $(VM_BOX)
$(VM_BOX): vagrant/build-box.sh vagrant/vagrant.pub
	vagrant/build-box.sh $(BUILD)/vagrant

vm-test: all $(VM_BOX)
	@if [ "$$(id -u)" != 0 ]; then echo "make vm-test needs root: network namespace, tap devices" >&2; exit 2; fi
	@ls $(BUILD)/dpr-cluster_$(VERSION)_amd64.deb $(BUILD)/libdpr0_$(VERSION)_amd64.deb >/dev/null 2>&1 || $(MAKE) deb
	cd tests && DPR_BUILD=$(abspath $(BUILD)) DPR_DEB_DIR=$(abspath $(BUILD)) DPR_VM_BOX=$(abspath $(VM_BOX)) \
		nice -n 10 $(PYTHON) -m pytest -v -s -p no:cacheprovider vm/test_vagrantfile.py vm/test_vmlab.py vm/test_vagrant_cluster.py

# --- install, uninstall, deb (install.mk) ----------------------------------
include install.mk

# (after every build.mk: VALUE_OBJS is complete)
$(VALUE_OBJS): CPPFLAGS += -DDPR_BINDIR='"$(BINDIR)"' -DDPR_VERSION='"$(VERSION)"'
$(VALUE_OBJS): $(VALUES_STAMP)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)

# --- the main command ---------------------------------------------------------
# `sudo make demo`: boots one systemd node in namespaces (tests/cluster/), applies
# examples/cluster.yaml with dprctl, runs a client, kills -9 a cache-store and
# shows the recovery, then tears everything down (examples/demo.py; root).
# `make demo-finder`: the older, smaller demo of dpr-finder alone on loopback.
.PHONY: demo demo-finder
demo: deps-if-missing
	@if [ "$$(id -u)" != 0 ]; then echo "make demo needs root: it boots a systemd node in Linux namespaces (run: sudo make demo)" >&2; exit 2; fi
	$(MAKE) all
	/usr/bin/python3 examples/demo.py --build $(BUILD)

# three systemd nodes, the finder on the Raft leader, a power cut (root)
demo-cluster: deps-if-missing
	@if [ "$$(id -u)" != 0 ]; then echo "make demo-cluster needs root: it boots systemd nodes in Linux namespaces" >&2; exit 2; fi
	$(MAKE) all
	/usr/bin/python3 examples/cluster-demo.py --build $(BUILD)

demo-finder: deps-if-missing
	$(MAKE) all
	examples/finder-demo.sh $(BUILD)
