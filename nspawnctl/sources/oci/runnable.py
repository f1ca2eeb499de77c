"""What systemd-nspawn needs of a tree that an image may lack.

Many images are built FROM scratch: one static program, no /usr, often no /etc.  systemd-nspawn
refuses to run anything in a tree without /usr ("doesn't look like it has an OS tree"), even
an empty one, and makes the rest it mounts on (/dev, /proc, /sys, /run, /tmp, /etc for its
resolv.conf and hostname) itself.  So an unpacked image gets an empty /usr when it has none,
and nothing else: what the image brought is left as it is (a /usr it has, even a symlink or a
file, stays; nspawn judges it), and nothing it has is changed.
"""

import os
from pathlib import Path


def make_runnable(tree: Path) -> list[str]:
    """Add to an unpacked image's tree what systemd-nspawn needs and it lacks; returns what
    was added (for the base tree's record)."""
    added = []
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            os.mkdir("usr", 0o755, dir_fd=fd)  # never through a link: EEXIST for any entry
            os.chmod("usr", 0o755, dir_fd=fd)  # whatever the umask (a directory made just now)
            added.append("/usr")
        except FileExistsError:
            pass
    finally:
        os.close(fd)
    return added
