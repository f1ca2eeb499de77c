"""Host-side networking: nspawnctl's own bridges, address leases and one nftables table.

systemd-nspawn makes each container's veth pair (Bridge= in its .nspawn file); this package
gives the bridge an address, the container an address and a default route, the host NAT,
isolation and published ports, and the container a resolv.conf.  It touches nothing else on
the host: no other interface, route, rule or firewall table, and no systemd-networkd.

Modules import what they need lazily (pyroute2 alone costs ~130 ms to import): inside.py
runs at every container start and imports neither pyroute2 nor nftables.
"""
