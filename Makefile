# SPDX-License-Identifier: GPL-2.0-or-later
# make check  - the whole test suite, on every supported Debian release:
#               on trixie (the stable release) everything: the source
#               build with its unit tests, lintian, the unit tests in both
#               locales, the package tests, the reduced hardening tests,
#               the autopkgtests (debian/tests) and piuparts; on sid and
#               bookworm the build with its unit tests, lintian, the
#               upgrade from that release's old systraq (package test),
#               the autopkgtests and piuparts.  Each in throwaway chroots
#               of that release, with that release's Python and tools.
#               RELEASES="trixie" (or any subset) for local work.
#               Needs root.
# make demo   - build the package, install it in a throwaway chroot and show
#               what an administrator sees
# Both install what they need on the host with apt-get first
# (tools/install-deps).
# make hardening - the hardening tests (tests/hardening: faults, load,
#               hostile input) in full, e.g. 50 SIGKILLs per job and a tree
#               of 1,000,000 files, then the results table of
#               doc/hardening.md from that run (check runs them reduced)
# make bench  - benchmarks, run by hand (not part of check): bench/snapshot
#               against sha256sum and AIDE, bench/packages against debsums
#               and dpkg --verify, bench/contents against the old filetraq
#               script (apt-get download, not installed), and the loading
#               of dpkg's database and logs (installs aide, which enables
#               its own daily timer on this machine, and debsums),
#               bench/pagecache, what the daily packages check leaves in
#               the page cache and its speed cold and warm, against the
#               code before it left the cache alone (drops the machine's
#               page cache; needs git), and bench/apt, what an apt run
#               pays for systraq (make deb first)

SHELL := /bin/bash
# Debian's python3 and tools, never a python3 from another PATH entry.
export PATH := /usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL := C.UTF-8
PYTHON := /usr/bin/python3
BUILD := build
TIMED := tools/timed
RELEASE_TOOL := tools/release
# The supported releases, and the one the whole suite runs on.
RELEASES ?= trixie sid bookworm
PRIMARY := trixie
# What the single-release targets below work on.
RELEASE ?= $(PRIMARY)

.PHONY: check deps source deb lintian unit package-test upgrade-test hardening-reduced \
        hardening autopkgtest piuparts demo bench clean

check: deps
	@$(TIMED) source $(RELEASE_TOOL) source $(BUILD)
	@set -e; for r in $(RELEASES); do \
	    $(TIMED) build-$$r $(RELEASE_TOOL) build $$r $(BUILD); \
	    $(TIMED) lintian-$$r $(RELEASE_TOOL) lintian $$r $(BUILD); \
	    if [ $$r = $(PRIMARY) ]; then \
	        $(TIMED) unit-$$r $(MAKE) -s unit RELEASE=$$r; \
	        $(TIMED) package-test-$$r $(MAKE) -s package-test RELEASE=$$r; \
	        $(TIMED) hardening-$$r $(MAKE) -s hardening-reduced RELEASE=$$r; \
	    else \
	        $(TIMED) upgrade-test-$$r $(MAKE) -s upgrade-test RELEASE=$$r; \
	    fi; \
	    $(TIMED) autopkgtest-$$r tools/autopkgtest $$r $(BUILD); \
	    $(TIMED) piuparts-$$r $(RELEASE_TOOL) piuparts $$r $(BUILD); \
	done

deps:
	@$(TIMED) deps tools/install-deps

source:
	$(RELEASE_TOOL) source $(BUILD)

# The source package, then the .deb of each release in $(BUILD)/RELEASE/.
deb: source
	@set -e; for r in $(RELEASES); do $(RELEASE_TOOL) build $$r $(BUILD); done

lintian:
	@set -e; for r in $(RELEASES); do $(RELEASE_TOOL) lintian $$r $(BUILD); done

# The unit tests on RELEASE's Python, in a chroot of it, in both locales.
unit:
	$(RELEASE_TOOL) test $(RELEASE) 'set -e; \
	    pyflakes3 systraq tests bench; \
	    python3 -m pytest -q -p no:cacheprovider tests/unit; \
	    LC_ALL=C python3 -m pytest -q -p no:cacheprovider tests/unit'

package-test:
	SYSTRAQ_TEST_SUITE=$(RELEASE) SYSTRAQ_BUILD=$(abspath $(BUILD))/$(RELEASE) \
	    $(PYTHON) -m pytest -v -p no:cacheprovider tests/package

# The upgrade from RELEASE's own old systraq, the first report after it,
# debconf, the trigger and the purge (tests/package/test_debian.py).
upgrade-test:
	SYSTRAQ_TEST_SUITE=$(RELEASE) SYSTRAQ_BUILD=$(abspath $(BUILD))/$(RELEASE) \
	    $(PYTHON) -m pytest -v -p no:cacheprovider tests/package/test_debian.py

# Reduced counts (make check), on RELEASE's Python in a chroot of it; the
# full run (on the host's) rewrites doc/hardening.md's table.
hardening-reduced:
	$(RELEASE_TOOL) test $(RELEASE) \
	    'python3 -m pytest -v -p no:cacheprovider tests/hardening'

hardening:
	mkdir -p $(BUILD)
	rm -f $(BUILD)/hardening-results.jsonl
	SYSTRAQ_HARDENING=full SYSTRAQ_HARDENING_RESULTS=$(abspath $(BUILD))/hardening-results.jsonl \
	    $(PYTHON) -m pytest -v -p no:cacheprovider tests/hardening
	tools/hardening-table $(BUILD)/hardening-results.jsonl doc/hardening.md

# debian/tests against the installed .deb of RELEASE (log:
# build/RELEASE/autopkgtest.log).
autopkgtest:
	tools/autopkgtest $(RELEASE) $(BUILD)

# RELEASE's piuparts: install, purge, and upgrade from that release's old
# systraq (log: build/RELEASE/piuparts.log).
piuparts:
	$(RELEASE_TOOL) piuparts $(RELEASE) $(BUILD)

demo:
	@tools/install-deps
	@$(RELEASE_TOOL) source $(BUILD) >/dev/null
	@$(RELEASE_TOOL) build $(RELEASE) $(BUILD) >/dev/null
	@SYSTRAQ_TEST_SUITE=$(RELEASE) $(PYTHON) tools/demo $(BUILD)/$(RELEASE)

bench:
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    aide debsums time >/dev/null
	$(PYTHON) bench/snapshot
	$(PYTHON) bench/packages
	$(PYTHON) bench/contents
	$(PYTHON) bench/dpkgdb
	$(PYTHON) bench/attribution
	$(PYTHON) bench/watch
	$(PYTHON) bench/pagecache
	# What an apt run pays for systraq: needs build/trixie's .deb (make deb).
	$(PYTHON) bench/apt

clean:
	rm -rf $(BUILD)
