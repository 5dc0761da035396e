# SPDX-License-Identifier: GPL-2.0-or-later
# make check  - the whole test suite: unit tests, package build, lintian,
#               the package test in a Debian chroot, the autopkgtests
#               (debian/tests) and piuparts, each in a throwaway bookworm
#               (needs root)
# make demo   - build the package, install it in a throwaway chroot and show
#               what an administrator sees
# Both install what they need with apt-get first (tools/install-deps).
# make hardening - the hardening tests (tests/hardening: faults, load,
#               hostile input) in full, e.g. 50 SIGKILLs per job and a tree
#               of 1,000,000 files, then the results table of
#               doc/hardening.md from that run (check runs them reduced)
# make bench  - benchmarks, run by hand (not part of check): bench/snapshot
#               against sha256sum and AIDE, bench/packages against debsums
#               and dpkg --verify, bench/contents against the old filetraq
#               script (apt-get download, not installed), and the loading
#               of dpkg's database and logs (installs aide, which enables
#               its own daily timer on this machine, and debsums)

SHELL := /bin/bash
# Debian's python3 and tools, never a python3 from another PATH entry.
export PATH := /usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL := C.UTF-8
PYTHON := /usr/bin/python3
BUILD := build
TIMED := tools/timed

.PHONY: check deps ext unit deb lintian package-test hardening-reduced hardening autopkgtest piuparts demo bench clean

check:
	@$(TIMED) deps tools/install-deps
	@$(TIMED) unit $(MAKE) -s unit
	@$(TIMED) deb $(MAKE) -s deb
	@$(TIMED) lintian $(MAKE) -s lintian
	@$(TIMED) package-test $(MAKE) -s package-test
	@$(TIMED) hardening $(MAKE) -s hardening-reduced
	@$(TIMED) autopkgtest $(MAKE) -s autopkgtest
	@$(TIMED) piuparts $(MAKE) -s piuparts

deps:
	tools/install-deps

# systraq._native (a quick snapshot's walk and the reading of state files,
# in C) built into the source tree, where the unit, hardening and bench
# runs import systraq from; the package builds its own.
ext:
	$(PYTHON) setup.py -q build_ext --inplace

unit: ext
	pyflakes3 systraq tests bench
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/unit
	LC_ALL=C $(PYTHON) -m pytest -q -p no:cacheprovider tests/unit

deb:
	tools/build-deb $(BUILD)

lintian:
	lintian --fail-on error,warning --info --display-info $(BUILD)/systraq_*.changes

package-test:
	SYSTRAQ_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -v -p no:cacheprovider tests/package

# Reduced counts (make check); the full run rewrites doc/hardening.md's table.
hardening-reduced: ext
	SYSTRAQ_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -v -p no:cacheprovider tests/hardening

hardening: ext deb
	rm -f $(BUILD)/hardening-results.jsonl
	SYSTRAQ_HARDENING=full SYSTRAQ_BUILD=$(abspath $(BUILD)) \
	    SYSTRAQ_HARDENING_RESULTS=$(abspath $(BUILD))/hardening-results.jsonl \
	    $(PYTHON) -m pytest -v -p no:cacheprovider tests/hardening
	tools/hardening-table $(BUILD)/hardening-results.jsonl doc/hardening.md

# debian/tests against the installed .deb (log: build/autopkgtest.log).
autopkgtest:
	tools/autopkgtest $(BUILD)

# Install, purge, and upgrade from the archive's old systraq (log:
# build/piuparts.log).
piuparts:
	tools/piuparts $(BUILD)

demo:
	@tools/install-deps
	@tools/build-deb $(BUILD) >/dev/null
	@$(PYTHON) tools/demo $(BUILD)

bench: ext
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    aide debsums time >/dev/null
	$(PYTHON) bench/snapshot
	$(PYTHON) bench/packages
	$(PYTHON) bench/contents
	$(PYTHON) bench/dpkgdb
	$(PYTHON) bench/attribution
	$(PYTHON) bench/watch

clean:
	rm -rf $(BUILD) systraq/_native.*.so
