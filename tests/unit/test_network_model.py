"""network.model and settings.networking: published ports and network names, good and bad."""

import ipaddress

import pytest

from nspawnctl.errors import Error
from nspawnctl.network.model import Network, check_subnet
from nspawnctl.settings.networking import Port, bridge_of, check_network_name, parse_port


@pytest.mark.parametrize("text, port", [
    ("8080:80", Port(None, 8080, 80, "tcp")),
    ("8080:80/tcp", Port(None, 8080, 80, "tcp")),
    ("53:53/udp", Port(None, 53, 53, "udp")),
    ("127.0.0.1:8080:80", Port("127.0.0.1", 8080, 80, "tcp")),
    ("192.0.2.7:1:65535/udp", Port("192.0.2.7", 1, 65535, "udp")),
    ("0.0.0.0:8080:80", Port(None, 8080, 80, "tcp")),  # every address, like docker -p
])
def test_parse_port(text, port):
    assert parse_port(text) == port


@pytest.mark.parametrize("text", ["8080:80", "53:53/udp", "127.0.0.1:8080:80/tcp",
                                  "198.51.100.4:443:8443/tcp"])
def test_port_round_trips(text):
    port = parse_port(text)
    assert parse_port(str(port)) == port
    assert str(parse_port(str(port))) == str(port)


@pytest.mark.parametrize("text, why", [
    ("0:80", "out of range"),
    ("80:0", "out of range"),
    ("65536:80", "out of range"),
    ("80:99999", "out of range"),
    ("80:80/sctp", "unknown protocol"),
    ("80:80/", "unknown protocol"),
    ("80", "wrong number"),
    ("", "wrong number"),
    ("1:2:3:4", "wrong number"),
    ("x:80", "not a port number"),
    ("-1:80", "not a port number"),
    ("+80:80", "not a port number"),
    (" 80:80", "not a port number"),
    ("٨٠:80", "not a port number"),  # Arabic-Indic digits: isdigit() but not a port
    ("999.1.1.1:80:80", "not an IP address"),
    ("localhost:80:80", "not an IP address"),
    ("[::1]:80:80", "wrong number"),
    ("224.0.0.1:80:80", "not a unicast"),
])
def test_bad_ports_are_one_line(text, why):
    with pytest.raises(Error) as err:
        parse_port(text)
    assert why in err.value.message
    assert "\n" not in err.value.message
    assert err.value.hint


@pytest.mark.parametrize("name", ["default", "a", "web", "a-b", "abcdefghijk", "0net",
                                  "abcdefghijkl", "react-express", "a" * 63])
def test_good_network_names(name):
    assert check_network_name(name) == name
    assert len(Network.make(name, "192.0.2.0/24").bridge.encode()) <= 15


def test_bridges_of_long_names_are_hashed_and_never_a_short_names():
    """A name that fits keeps "nsc-" + name (existing bridges stay as they are); a longer
    one gets a hashed bridge holding "_", which no network name has."""
    assert bridge_of("abcdefghijk") == "nsc-abcdefghijk"
    long = bridge_of("react-express")
    assert long.startswith("nsc-react_") and len(long) == 15
    assert bridge_of("react-express2") != long
    assert bridge_of("react-express") == long  # stable: files and the firewall name it
    with pytest.raises(Error):
        check_network_name(long[len("nsc-"):])


@pytest.mark.parametrize("name, why", [
    ("", "empty"), ("a" * 64, "longer than 63"), ("none", "reserved"),
    ("host", "reserved"), ("Web", "invalid"), ("-a", "invalid"), ("a-", "invalid"),
    ("a_b", "invalid"), ("a.b", "invalid"), ("a b", "invalid"), ("é", "invalid"),
])
def test_bad_network_names(name, why):
    with pytest.raises(Error) as err:
        check_network_name(name)
    assert why in err.value.message


def test_network_gateway_is_the_first_host():
    net = Network.make("default", "192.0.2.128/25")
    assert net.bridge == "nsc-default"
    assert net.gateway == ipaddress.IPv4Address("192.0.2.129")
    assert net.prefixlen == 25


@pytest.mark.parametrize("subnet, why", [
    ("192.0.2.1/24", "host bits"), ("2001:db8::/64", "IPv4"), ("192.0.2.0/31", "too small"),
    ("127.0.0.0/24", "special"), ("224.0.0.0/24", "special"), ("169.254.0.0/16", "special"),
    ("nonsense", "invalid subnet"),
])
def test_bad_subnets(subnet, why):
    with pytest.raises(Error) as err:
        check_subnet(subnet)
    assert why in err.value.message
