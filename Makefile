# The README's two commands, run as root: `make demo` (the main job) and `make test` (every test).
# Both install what is missing first: Debian packages, then a virtualenv with nspawnctl.

PYTHON := /usr/bin/python3
HELPER := nspawnctl/helpers/nspawnctl-enter
VENV := .venv
# Besides nspawnctl's own packages (vagrant/provision.sh): what the tests and benchmarks use.
TEST_PACKAGES := make socat busybox-static podman runc skopeo umoci zstd python3-pip dnsmasq-base \
	curl python3-hypothesis gcc libc6-dev groff-base zsh fish ansible-core strace
# The VM tier (tests/vm.py): vagrant/Vagrantfile under libvirt, qemu with software emulation,
# the box built with mmdebstrap on an extlinux disk.  Not inside that VM (NSPAWNCTL_VM=never).
VM_PACKAGES := qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients iptables \
	vagrant vagrant-libvirt tini mmdebstrap extlinux syslinux-common fdisk rsync openssh-client

.PHONY: demo test unit lint integration vm vm-test bench deps venv helper

demo: venv
	$(VENV)/bin/python tests/demo.py

# ARGS=--full runs the long fault and load tests with their full counts.  --durations lists
# the slowest tests at the end, to see where the suite's hour goes.
test: venv lint
	$(VENV)/bin/python -m pytest --durations=30 tests/unit tests/netns tests/integration $(ARGS)
	$(VENV)/bin/python -m pytest tests/integration_vm $(ARGS)

unit: venv lint
	$(VENV)/bin/python -m pytest tests/unit

# ruff (lint, import order) and mypy over the package; the cycle check is a unit test.
lint: venv
	$(VENV)/bin/ruff check nspawnctl tests
	$(VENV)/bin/mypy nspawnctl

integration: venv
	$(VENV)/bin/python -m pytest tests/integration

# The VM tier alone: limits enforced on a real kernel, a real reboot (part of `make test`).
vm: venv
	$(VENV)/bin/python -m pytest tests/integration_vm $(ARGS)

# The whole suite inside the VM, on its own kernel with systemd as PID 1 (not in CI: slow
# under emulation).  Lint ran on this host; ruff and mypy would need PyPI in the VM.
# While it runs, its log grows in the VM's /var/tmp/vm-test.log (the first line printed says
# how to log in).
# VM_TESTS picks what runs (a complete run is hours under emulation, so it can go in parts).
VM_TESTS ?= tests/unit tests/netns tests/integration
vm-test: venv
	$(VENV)/bin/python -m tests.vm sh -c 'cd /vagrant && NSPAWNCTL_VM=never python3 -m pytest \
		-p no:cacheprovider -rfE $(VM_TESTS) $(ARGS) \
		>/var/tmp/vm-test.log 2>&1; rc=$$?; cat /var/tmp/vm-test.log; exit $$rc'

bench: venv
	$(VENV)/bin/python -m tests.bench

# The small program the health checks enter a container with (its comment says why it is C):
# static, so that one build runs on the host, in the testbed and in the VM alike.
helper: $(HELPER)
$(HELPER): $(HELPER).c
	cc -O2 -Wall -Wextra -Werror -static -o $@ $<

deps:
	@vagrant/provision.sh --deps $(TEST_PACKAGES) $(if $(filter never,$(NSPAWNCTL_VM)),,$(VM_PACKAGES))

# The venv sees Debian's python3-pystemd (built against this host's libsystemd) through the
# system site-packages; only the test tools come from PyPI.
$(VENV)/.ready: pyproject.toml | deps
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# Then the man page and the shell completions, as provision.sh installs them on a host (as
# root: they go to /usr/local/share and /usr/share; only what differs is written).
venv: deps $(VENV)/.ready $(HELPER)
	@if [ "$$(id -u)" = 0 ]; then $(VENV)/bin/nspawnctl install-extras; fi
