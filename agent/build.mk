# agent/build.mk - dpr-agent, the node daemon (control socket, systemd units
# through sd-bus, the hosted finder). Private headers: agent/src/.
#
# Included by the top-level Makefile. The agent's modules except main.c go
# into $(AGENT_A), so unit tests (tests/agent/test_*.c) link them.

AGENT_SRC = $(filter-out agent/src/main.c,$(sort $(wildcard agent/src/*.c)))
AGENT_A = $(BUILD)/libdpragent.a
AGENT_BIN = $(BUILD)/dpr-agent
# avahi-client (DNS-SD) and libnl-route (address and link events): flags
# from pkg-config, like every library whose headers are not in /usr/include.
AGENT_PKGS = avahi-client libnl-route-3.0
AGENT_LIBS = $(FINDER_LIBS) -lsystemd -lconfig -ljansson -lraft -llz4 \
             $(shell pkg-config --libs $(AGENT_PKGS) 2>/dev/null)

# (finder/src: the RESP request reader, request.h, which replserver.c uses too)
AGENT_PKG_CFLAGS := $(shell pkg-config --cflags $(AGENT_PKGS) 2>/dev/null)
$(BUILD)/obj/agent/%.o: CPPFLAGS += -Iagent/src -Ifinder/include -Ifinder/src $(AGENT_PKG_CFLAGS)
$(BUILD)/obj/tests/agent/%.o: CPPFLAGS += -Iagent/src -Ifinder/include $(AGENT_PKG_CFLAGS)

$(AGENT_A): $(patsubst %.c,$(BUILD)/obj/%.o,$(AGENT_SRC))
	@rm -f $@
	ar rcs $@ $^

$(AGENT_BIN): $(BUILD)/obj/agent/src/main.o $(AGENT_A) $(FINDER_A) $(LIBDPR_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(AGENT_LIBS)

UNIT_BINS += $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/agent/test_*.c))

$(BUILD)/tests/agent/test_%: $(BUILD)/obj/tests/agent/test_%.o $(AGENT_A) $(FINDER_A) $(LIBDPR_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(AGENT_LIBS)

# Installs the agent, its units and the example configuration (never
# overwrites an existing /etc/dpr/agent.conf). Unit files name /usr/local;
# another PREFIX is substituted.
AGENT_UNITDIR ?= $(PREFIX)/lib/systemd/system
AGENT_DOCDIR ?= $(PREFIX)/share/doc/dpr

.PHONY: agent install-agent
agent: $(AGENT_BIN)

install-agent: $(AGENT_BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(AGENT_UNITDIR) $(DESTDIR)/etc/dpr $(DESTDIR)$(AGENT_DOCDIR)
	install -m 0755 $(AGENT_BIN) $(DESTDIR)$(PREFIX)/bin/dpr-agent
	for u in dpr-agent.service dpr-cachestore@.service; do \
		sed 's|/usr/local|$(PREFIX)|g' units/$$u >$(DESTDIR)$(AGENT_UNITDIR)/$$u.tmp && \
		chmod 0644 $(DESTDIR)$(AGENT_UNITDIR)/$$u.tmp && \
		mv $(DESTDIR)$(AGENT_UNITDIR)/$$u.tmp $(DESTDIR)$(AGENT_UNITDIR)/$$u || exit 1; \
	done
	if [ ! -e $(DESTDIR)/etc/dpr/agent.conf ]; then \
		sed 's|/usr/local|$(PREFIX)|g' conf/agent.conf >$(DESTDIR)/etc/dpr/agent.conf && \
		chmod 0644 $(DESTDIR)/etc/dpr/agent.conf; \
	else \
		echo "install-agent: keeping the existing $(DESTDIR)/etc/dpr/agent.conf"; \
	fi
	install -m 0644 docs/operations.md docs/control-api.md $(DESTDIR)$(AGENT_DOCDIR)/

# Fuzz targets of the agent's parsers (tests/agent/fuzz_*.c): the pure
# modules only.
AGENT_FUZZ_SRC = $(addprefix agent/src/,problems.c spec.c plan.c state.c statefile.c proto.c \
                   cstate.c placement.c replproto.c dnssd.c rafthello.c) \
                 libdpr/src/domain.c finder/src/request.c
FUZZ_BINS += $(patsubst tests/agent/%.c,build/fuzz/%,$(wildcard tests/agent/fuzz_*.c))

build/fuzz/fuzz_agent_%: tests/agent/fuzz_agent_%.c $(AGENT_FUZZ_SRC) $(COMMON_SRC)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -Iagent/src -Ifinder/src $(FUZZ_CFLAGS) -o $@ $^ $(COMMON_LIBS) -ljansson -lz \
		-lhiredis
