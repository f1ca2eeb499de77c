#!/bin/sh
# Install nspawnctl on a Debian 12 host whose PID 1 is systemd (a Vagrant VM, a server, or the
# test suite's testbed, which runs this very script while it is built).
#
#   provision.sh                   install the packages nspawnctl needs, then nspawnctl itself
#   provision.sh --test            ... and then run the whole test suite (what Vagrant does)
#   provision.sh --deps PKG...     only install these Debian packages plus nspawnctl's own
#   provision.sh --print-packages  the Debian packages nspawnctl needs at run time
#
# Idempotent: packages already installed and an install already in place are left alone.
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/nspawnctl

# Debian's python3-pystemd is built against the host's libsystemd, so nothing is compiled here.
# Networking: pyroute2 (netlink) and the nftables library's JSON API; libnss-mymachines lets the
# host resolve container names through machined. pyelftools reads ELF files for create --from
# scratch (a program's shared libraries, without running ldd).  dpkg-dev: mmdebstrap's eatmydata
# hook asks its dpkg-architecture where the library goes (bootstraps are faster with it).
# man-db and bash-completion read what `nspawnctl install-extras` installs: `man nspawnctl`, Tab.
PACKAGES="systemd-container dbus debootstrap mmdebstrap dpkg-dev python3 python3-venv python3-setuptools python3-wheel
python3-click python3-tabulate python3-pystemd python3-zstandard python3-yaml
iproute2 nftables python3-nftables python3-pyroute2 libnss-mymachines python3-pyelftools
man-db bash-completion skopeo"

apt_install() {
    missing=""
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
    done
    [ -z "$missing" ] && return 0
    echo "provision: installing$missing"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
}

install_nspawnctl() {
    # An editable install: the testbed mounts the source at the same path on every boot, so it
    # always runs the code under test without reinstalling.
    stamp="$PREFIX/.installed-from"
    want="$SRC $(sha256sum "$SRC/pyproject.toml" | cut -d' ' -f1)"
    if [ ! -x "$PREFIX/bin/nspawnctl" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "provision: installing nspawnctl from $SRC into $PREFIX"
        [ -x "$PREFIX/bin/python" ] || python3 -m venv --system-site-packages "$PREFIX"
        "$PREFIX/bin/pip" install -q --no-deps --no-build-isolation --no-index -e "$SRC"
        echo "$want" > "$stamp"
    fi
    ln -sf "$PREFIX/bin/nspawnctl" /usr/local/bin/nspawnctl
    # nspawnctl's boot-time units (units/): the store is made whole before containers start
    "$PREFIX/bin/nspawnctl" install-units
    # its man page and the bash, zsh and fish completions (only what differs is written)
    "$PREFIX/bin/nspawnctl" install-extras
}

build_helper() {
    # The small program the health checks enter a container with (nspawnctl/helpers/), built
    # here when the source comes without a fresh build of it: the testbed and the VM get the
    # host's build (make venv) with the source tree, and need no compiler.
    helper="$SRC/nspawnctl/helpers/nspawnctl-enter"
    if [ ! -x "$helper" ] || [ "$helper.c" -nt "$helper" ]; then
        apt_install gcc libc6-dev
        make -s -C "$SRC" helper
    fi
}

install_sysctl() {
    # units/60-nspawnctl.conf: the inotify limits many booted containers need (the file says
    # why).  systemd-sysctl applies /etc/sysctl.d at every boot; applied now as well.  In a
    # container (the testbed while it is built) /proc/sys is read-only: the host's count.
    install -m 0644 "$SRC/units/60-nspawnctl.conf" /etc/sysctl.d/60-nspawnctl.conf
    /lib/systemd/systemd-sysctl /etc/sysctl.d/60-nspawnctl.conf 2>/dev/null ||
        echo "provision: /etc/sysctl.d/60-nspawnctl.conf installed, applied at the next boot"
}

case "${1:-}" in
    --print-packages) echo $PACKAGES; exit 0 ;;
    --deps) shift; apt_install $PACKAGES "$@"; exit 0 ;;
    ""|--test) ;;
    *) echo "usage: $0 [--test | --deps PKG... | --print-packages]" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || { echo "provision: run as root" >&2; exit 1; }
apt_install $PACKAGES make
build_helper
install_nspawnctl
install_sysctl
if [ "${1:-}" = --test ]; then
    make -C "$SRC" test
fi
