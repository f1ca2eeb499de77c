"""units/ is shipped as the package data nspawnctl.units: every unit file nspawnctl installs or
renders (nspawnctl/systemd/unitfiles.py reads them).  This file only makes the folder a package."""
