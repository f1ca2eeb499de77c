"""Formats nspawnctl writes: a tree as a tar stream (tar.py) and as an OCI or Docker image
archive (oci.py), with the platform names images use (platforms.py).  Reading images is the
sources' (sources/oci/); these only write."""
