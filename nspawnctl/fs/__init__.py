"""Filesystem primitives the store is built on, one module per concern:

- files.py: files written whole or not at all (write_atomic, rename_noreplace, syncs) and
  small files read bounded;
- locks.py: flock() locks, and the PID-BOOT tokens that say who owns what a command left;
- walk.py: the one fd-relative walker (DirCursor), and deleting and measuring trees with it;
- resolve.py: openat2, and the one in-root resolver (paths inside a container's tree);
- copy.py: the one copier of trees someone else may change meanwhile;
- mounts.py: mount(2), umount(2) and what is mounted where.
"""
