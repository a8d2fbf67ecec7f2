# agent/build.mk - dpr-agent, the node daemon (control socket, systemd units
# through sd-bus, the hosted finder).
# Included by the top-level Makefile (uses its BUILD, CC, CPPFLAGS,
# ALL_CFLAGS, LDFLAGS, LIBS, FINDER_A and LIBDPR_A; objects come from its
# $(BUILD)/obj/%.o rule). Alone:
#   make -f Makefile -f agent/build.mk build/dpr-agent
#
# The agent's modules except main.c go into $(AGENT_A), so unit tests
# (tests/unit/test_agent_*.c) link them; the rule below links those tests
# with the agent library and its system libraries. GNU make prefers it over
# the generic $(BUILD)/tests/% rule because its stem is shorter.

AGENT_SRC = $(filter-out agent/src/main.c,$(sort $(wildcard agent/src/*.c)))
AGENT_A = $(BUILD)/libdpragent.a
AGENT_BIN = $(BUILD)/dpr-agent
AGENT_LIBS = -lsystemd -lconfig -ljansson

$(BUILD)/obj/agent/%.o: CPPFLAGS += -Iagent/src
$(BUILD)/obj/tests/unit/test_agent_%.o: CPPFLAGS += -Iagent/src

$(AGENT_A): $(patsubst %.c,$(BUILD)/obj/%.o,$(AGENT_SRC))
	@rm -f $@
	ar rcs $@ $^

$(AGENT_BIN): $(BUILD)/obj/agent/src/main.o $(AGENT_A) $(FINDER_A) $(LIBDPR_A)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(AGENT_LIBS)

$(BUILD)/tests/test_agent_%: $(BUILD)/obj/tests/unit/test_agent_%.o $(AGENT_A) $(FINDER_A) $(LIBDPR_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(AGENT_LIBS)

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

# Fuzz targets of the agent's parsers (tests/fuzz/fuzz_agent_*.c): the pure
# modules only. GNU make prefers this rule over build/fuzz/% (shorter stem).
AGENT_FUZZ_SRC = $(addprefix agent/src/,problems.c spec.c plan.c state.c statefile.c fsutil.c proto.c)

build/fuzz/fuzz_agent_%: tests/fuzz/fuzz_agent_%.c $(AGENT_FUZZ_SRC)
	@mkdir -p $(dir $@)
	clang $(CPPFLAGS) -Iagent/src $(FUZZ_CFLAGS) -o $@ $^ -ljansson
