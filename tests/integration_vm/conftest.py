"""The VM tier's fixture: vagrant/Vagrantfile booted under libvirt (see tests/vm.py)."""

import os
import shutil

import pytest

from tests import vm as vmtier
from tests.conftest import session_log


@pytest.fixture(scope="session")
def vm(request):
    """The booted VM, shared by the tier's tests; torn down at the end of the session.

    NSPAWNCTL_VM=never skips the tier: inside the VM itself (`make vm-test`, the Vagrantfile's
    test step) it would nest a VM in the VM."""
    if os.environ.get("NSPAWNCTL_VM") == "never":
        pytest.skip("NSPAWNCTL_VM=never")
    if os.geteuid() != 0:
        pytest.skip("the VM tier needs root (CI runs it as root)")
    missing = [t for t in ("vagrant", "libvirtd", "qemu-system-x86_64", "tini", "mmdebstrap",
                           "extlinux") if shutil.which(t) is None]
    assert not missing, f"the VM tier needs {missing}: `make deps` installs them"
    with vmtier.open_vm(session_log(request)) as machine:
        yield machine
