# install.mk - `make install`, `make uninstall` and `make deb` (docs/packaging.md).
#
# Included by the top-level Makefile. `make install` and the Debian package
# (debian/rules runs this install with Debian's directories into debian/tmp)
# put the same files in place; `make uninstall` removes what `make install`
# put there, with the same variables.
#
#   make install   [PREFIX=/usr/local] [DESTDIR=] [LIBDIR= UNITDIR= ...]
#   make uninstall [the same variables]
#   make deb       build/dpr-cluster_$(VERSION)_amd64.deb and the library
#                  packages (dpkg-buildpackage on a copy of the tree)
#
# VERSION (the first line of debian/changelog) and BINDIR are set in the
# Makefile: programs are compiled with them.

LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/dpr-cluster
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
# systemd reads units from /usr/local/lib/systemd/system too; Debian's
# package uses /lib/systemd/system (debian/rules)
UNITDIR ?= $(PREFIX)/lib/systemd/system
# systemd-sysusers reads /usr/lib/sysusers.d only: for another PREFIX,
# `make install` (DESTDIR empty) runs it on the installed file itself
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
SYSCONFDIR ?= /etc
# the journal's message catalog: journalctl reads /usr/lib/systemd/catalog and
# /usr/local/lib/systemd/catalog
CATALOGDIR ?= $(PREFIX)/lib/systemd/catalog
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

MAN_PAGES = $(wildcard man/*.[158])
UNITS = dpr-agent.service dpr-cachestore@.service
HEADERS = $(notdir $(wildcard libdpr/include/dpr/*.h))
PYTHON_FILES = $(notdir $(wildcard python-dpr/dpr/*.py))
PYTHON_DIST_INFO = dpr_cluster-$(VERSION).dist-info
# the cluster specs, and the Prometheus scrape config and Grafana dashboard
# (docs/operations.md, "Metrics")
EXAMPLES = $(notdir $(wildcard examples/*.yaml)) prometheus.yml grafana-dpr.json
DOCS = operations.md control-api.md discovery.md dpr-kv.md dpr-redis.md tls.md

# Paths in units, agent.conf and the .pc files name /usr/local; an install
# elsewhere substitutes its own.
INSTALL_SED = sed -e 's|/usr/local/bin|$(BINDIR)|g' -e 's|/usr/local/share/doc/dpr-cluster|$(DOCDIR)|g' \
                  -e 's|@VERSION@|$(VERSION)|g' -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
                  -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g'
D = $(DESTDIR)

.PHONY: install uninstall programs deb
# what the package needs built (no tests, no benchmarks)
programs: $(LIBDPR_A) $(LIBDPR_SO) $(DISCOVER_A) $(DISCOVER_SO) $(FINDER_BIN) $(KV_BIN) $(RP_BIN) $(AGENT_BIN)

install: programs
	install -d $(D)$(BINDIR) $(D)$(LIBDIR) $(D)$(PKGCONFIGDIR) $(D)$(INCLUDEDIR)/dpr \
		$(D)$(PYTHON_SITE)/dpr $(D)$(UNITDIR) $(D)$(SYSUSERSDIR) $(D)$(SYSCONFDIR)/dpr \
		$(D)$(MANDIR)/man1 $(D)$(MANDIR)/man5 $(D)$(MANDIR)/man8 $(D)$(BASHCOMPDIR) \
		$(D)$(DOCDIR)/examples $(D)$(CATALOGDIR)
	install -m 0755 $(AGENT_BIN) $(FINDER_BIN) $(KV_BIN) $(RP_BIN) python-dpr/bin/dprctl $(D)$(BINDIR)/
	install -m 0644 $(BUILD)/$(LIBDPR_SONAME) $(BUILD)/$(DISCOVER_SONAME) $(D)$(LIBDIR)/
	ln -sfn $(LIBDPR_SONAME) $(D)$(LIBDIR)/libdpr.so
	ln -sfn $(DISCOVER_SONAME) $(D)$(LIBDIR)/libdpr-discover.so
	install -m 0644 $(LIBDPR_A) $(DISCOVER_A) $(D)$(LIBDIR)/
	install -m 0644 $(addprefix libdpr/include/dpr/,$(HEADERS)) $(D)$(INCLUDEDIR)/dpr/
	for pc in dpr dpr-discover; do \
		$(INSTALL_SED) conf/$$pc.pc.in >$(D)$(PKGCONFIGDIR)/$$pc.pc && \
		chmod 0644 $(D)$(PKGCONFIGDIR)/$$pc.pc || exit 1; done
	install -m 0644 $(addprefix python-dpr/dpr/,$(PYTHON_FILES) py.typed) $(D)$(PYTHON_SITE)/dpr/
	@# the distribution's metadata (python-dpr/pyproject.toml): importlib.metadata and pip
	@# see dpr-cluster $(VERSION), with its dprctl entry point (top_level.txt, which
	@# lintian takes for documentation, only repeats the package's name)
	rm -rf $(D)$(PYTHON_SITE)/$(PYTHON_DIST_INFO)
	cd python-dpr && PYTHONWARNINGS=ignore $(PYTHON) setup.py -q dist_info \
		--output-dir $(abspath $(D)$(PYTHON_SITE)) >/dev/null
	rm -f $(D)$(PYTHON_SITE)/$(PYTHON_DIST_INFO)/top_level.txt
	test -f $(D)$(PYTHON_SITE)/$(PYTHON_DIST_INFO)/METADATA
	printf 'LIBDPR = "%s"\nVERSION = "%s"\n' '$(LIBDIR)/$(LIBDPR_SONAME)' '$(VERSION)' \
		>$(D)$(PYTHON_SITE)/dpr/_install.py
	for u in $(UNITS); do $(INSTALL_SED) units/$$u >$(D)$(UNITDIR)/$$u && \
		chmod 0644 $(D)$(UNITDIR)/$$u || exit 1; done
	install -m 0644 conf/sysusers.conf $(D)$(SYSUSERSDIR)/dpr-cluster.conf
	install -m 0644 conf/dpr-cluster.catalog $(D)$(CATALOGDIR)/dpr-cluster.catalog
	@if [ ! -e $(D)$(SYSCONFDIR)/dpr/agent.conf ]; then \
		$(INSTALL_SED) conf/agent.conf >$(D)$(SYSCONFDIR)/dpr/agent.conf && \
		chmod 0644 $(D)$(SYSCONFDIR)/dpr/agent.conf; \
	else \
		echo "install: keeping the existing $(D)$(SYSCONFDIR)/dpr/agent.conf"; \
	fi
	install -m 0644 $(filter %.1,$(MAN_PAGES)) $(D)$(MANDIR)/man1/
	install -m 0644 $(filter %.5,$(MAN_PAGES)) $(D)$(MANDIR)/man5/
	install -m 0644 $(filter %.8,$(MAN_PAGES)) $(D)$(MANDIR)/man8/
	install -m 0644 python-dpr/completion/dprctl $(D)$(BASHCOMPDIR)/dprctl
	install -m 0644 $(addprefix docs/,$(DOCS)) $(D)$(DOCDIR)/
	install -m 0644 $(addprefix examples/,$(EXAMPLES)) $(D)$(DOCDIR)/examples/
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
		ldconfig; \
		if command -v systemd-sysusers >/dev/null; then \
			systemd-sysusers $(SYSUSERSDIR)/dpr-cluster.conf; fi; \
		if command -v journalctl >/dev/null; then journalctl --update-catalog; fi; \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	fi

# Removes every file `make install` put there; /etc/dpr/agent.conf only when
# it is the file install wrote (a changed one stays, as a package's conffile
# does). The state in /var/lib/dpr and the dpr group stay.
uninstall:
	rm -f $(addprefix $(D)$(BINDIR)/,dpr-agent dpr-finder dpr-kv dpr-redis dprctl)
	rm -f $(addprefix $(D)$(LIBDIR)/,$(LIBDPR_SONAME) $(DISCOVER_SONAME) libdpr.so libdpr-discover.so \
		libdpr.a libdpr-discover.a)
	rm -f $(addprefix $(D)$(PKGCONFIGDIR)/,dpr.pc dpr-discover.pc)
	rm -f $(addprefix $(D)$(INCLUDEDIR)/dpr/,$(HEADERS))
	rm -f $(addprefix $(D)$(PYTHON_SITE)/dpr/,$(PYTHON_FILES) py.typed _install.py)
	rm -rf $(D)$(PYTHON_SITE)/$(PYTHON_DIST_INFO)
	rm -rf $(D)$(PYTHON_SITE)/dpr/__pycache__
	rm -f $(addprefix $(D)$(UNITDIR)/,$(UNITS)) $(D)$(SYSUSERSDIR)/dpr-cluster.conf
	rm -f $(D)$(CATALOGDIR)/dpr-cluster.catalog
	rm -f $(addprefix $(D)$(MANDIR)/man1/,$(notdir $(filter %.1,$(MAN_PAGES)))) \
		$(addprefix $(D)$(MANDIR)/man5/,$(notdir $(filter %.5,$(MAN_PAGES)))) \
		$(addprefix $(D)$(MANDIR)/man8/,$(notdir $(filter %.8,$(MAN_PAGES))))
	rm -f $(D)$(BASHCOMPDIR)/dprctl
	rm -f $(addprefix $(D)$(DOCDIR)/,$(DOCS)) $(addprefix $(D)$(DOCDIR)/examples/,$(EXAMPLES))
	@if [ -f $(D)$(SYSCONFDIR)/dpr/agent.conf ]; then \
		if $(INSTALL_SED) conf/agent.conf | cmp -s - $(D)$(SYSCONFDIR)/dpr/agent.conf; then \
			rm -f $(D)$(SYSCONFDIR)/dpr/agent.conf; \
		else echo "uninstall: keeping the changed $(D)$(SYSCONFDIR)/dpr/agent.conf"; fi; \
	fi
	rmdir $(D)$(INCLUDEDIR)/dpr $(D)$(PYTHON_SITE)/dpr $(D)$(DOCDIR)/examples $(D)$(DOCDIR) \
		$(D)$(SYSCONFDIR)/dpr 2>/dev/null || true
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
		ldconfig; \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	fi

# dpkg-buildpackage writes its results beside the source tree: it runs on a
# copy in build/deb-src (without build/ and .git), the packages land in build/.
DEB_SRC = $(BUILD)/deb-src/dpr-cluster-$(VERSION)
deb:
	rm -rf $(BUILD)/deb-src
	mkdir -p $(DEB_SRC)
	tar -cf - --exclude=./build --exclude=./$(BUILD) --exclude=./.git . | tar -xf - -C $(DEB_SRC)
	cd $(DEB_SRC) && dpkg-buildpackage -b -us -uc
	mv $(BUILD)/deb-src/*.deb $(BUILD)/deb-src/*.changes $(BUILD)/deb-src/*.buildinfo $(BUILD)/
	rm -rf $(BUILD)/deb-src
	@ls $(BUILD)/*_$(VERSION)_*.deb
