"""nspawnctl: a small manager for systemd-nspawn containers."""

__version__ = "0.1.0"
