# agent/build.mk - dpr-agent, the node daemon (control socket, systemd units
# through sd-bus, the hosted finder). Private headers: agent/src/.
#
# Included by the top-level Makefile. The agent's modules except main.c go
# into $(AGENT_A), so unit tests (tests/agent/test_*.c) link them.

AGENT_SRC = $(filter-out agent/src/main.c,$(sort $(wildcard agent/src/*.c)))
AGENT_A = $(BUILD)/libdpragent.a
AGENT_BIN = $(BUILD)/dpr-agent
# libconfig (agent.conf), jansson (the control API, state), raft and lz4
# (the cluster's Raft), avahi-client (DNS-SD), libnl-route (address and link
# events); flags from pkg-config (Makefile)
AGENT_PKGS = libconfig jansson raft liblz4 avahi-client libnl-route-3.0
AGENT_LIBS := $(FINDER_LIBS) $(call pkg_libs,$(AGENT_PKGS))

# (finder/src: the RESP request reader, request.h, which replserver.c uses too)
AGENT_PKG_CFLAGS := $(call pkg_cflags,$(AGENT_PKGS))
$(BUILD)/obj/agent/%.o: CPPFLAGS += -Iagent/src -Ifinder/include -Ifinder/src $(AGENT_PKG_CFLAGS)
$(BUILD)/obj/tests/agent/%.o: CPPFLAGS += -Iagent/src -Ifinder/include $(AGENT_PKG_CFLAGS)

$(AGENT_A): $(patsubst %.c,$(BUILD)/obj/%.o,$(AGENT_SRC))
	@rm -f $@
	ar rcs $@ $^

$(AGENT_BIN): $(BUILD)/obj/agent/src/main.o $(AGENT_A) $(FINDER_A) $(LIBDPR_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(AGENT_LIBS)

# The default cache-store program is BINDIR/dpr-kv (the install's; the
# package's is /usr/bin); main.c prints VERSION for --version
VALUE_OBJS += $(BUILD)/obj/agent/src/config.o $(BUILD)/obj/tests/agent/test_agent_config.o \
              $(BUILD)/obj/agent/src/main.o

UNIT_BINS += $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/agent/test_*.c))

$(BUILD)/tests/agent/test_%: $(BUILD)/obj/tests/agent/test_%.o $(AGENT_A) $(FINDER_A) $(LIBDPR_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(AGENT_LIBS)

.PHONY: agent
agent: $(AGENT_BIN)

# Fuzz targets of the agent's parsers (tests/agent/fuzz_*.c): the pure
# modules only (and config.c: agent.conf through libconfig).
AGENT_FUZZ_SRC = $(addprefix agent/src/,problems.c spec.c plan.c state.c statefile.c proto.c \
                   cstate.c placement.c replproto.c dnssd.c rafthello.c config.c netstate.c \
                   respread.c) \
                 libdpr/src/domain.c finder/src/request.c
FUZZ_BINS += $(patsubst tests/agent/%.c,build/fuzz/%,$(wildcard tests/agent/fuzz_*.c))

build/fuzz/fuzz_agent_%: tests/agent/fuzz_agent_%.c $(AGENT_FUZZ_SRC) $(COMMON_SRC)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -Iagent/src -Ifinder/src -Itests/lib $(FUZZ_CFLAGS) -o $@ $^ $(COMMON_LIBS) \
		$(call pkg_libs,jansson hiredis libconfig)
