"""The VM tier's box recipe (tests/vm.py), read without building anything: every package it
hands mmdebstrap is a Debian package name.  The Makefile's TEST_PACKAGES once ran over two
lines, the continuation's backslash became a "package", and the box could not be built (the
VM tier errored in 25 s)."""

import re

from tests import vm

PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")  # Debian policy 5.6.1


def test_the_makefiles_test_packages_are_read_whole():
    packages = vm.test_packages()
    assert "make" in packages and "fish" in packages  # its first line and its last
    assert [p for p in packages if not PACKAGE_NAME.fullmatch(p)] == []


def test_every_package_of_the_box_is_a_package_name():
    packages = vm.recipe()["packages"]
    assert [p for p in packages if not PACKAGE_NAME.fullmatch(p)] == []
