"""Machine-wide kernel settings that the density test and the benchmarks raise for their run.

The testbed shares this machine's kernel, so these are the settings of the machine itself
(/proc/sys on the host, which the testbed sees too): they are raised only as far as needed, and
put back when the run ends, also when it fails.
"""

import contextlib
from pathlib import Path

INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
# Every booted container takes inotify instances, charged to root in the parent user namespace:
# the kernel default (128) boots about 16 containers; 4096 booted 60 of 60 (ENVIRONMENT.md).
INOTIFY_WANTED = 4096


@contextlib.contextmanager
def raised(path: Path, wanted: int, log=print):
    """path holds at least wanted inside the with-block; its old value comes back afterwards.
    A value already high enough is left alone (and is not touched afterwards either)."""
    old = int(path.read_text())
    if old >= wanted:
        yield
        return
    log(f"raising {path} {old} -> {wanted} for the run (restored at the end)")
    path.write_text(str(wanted))
    try:
        yield
    finally:
        path.write_text(str(old))
        log(f"{path} restored to {old}")


def enough_inotify_instances(log=print):
    """fs.inotify.max_user_instances high enough to boot dozens of containers at once."""
    return raised(INOTIFY_INSTANCES, INOTIFY_WANTED, log)
