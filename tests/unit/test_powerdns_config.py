"""The PowerDNS settings (PDM_PDNS_*, PDM_NAMESERVERS, PDM_POOL_DNS,
PDM_DS_CHECK_NAMESERVER) as load_settings reads and checks them."""
from __future__ import annotations

import pytest

from pdm_app.config import DEFAULT_NAMESERVERS, ConfigError, load_settings

BASE = {"PDM_AUTH": "disabled"}
PDNS = {**BASE, "PDM_PDNS_BASE_URL": "http://powerdns.openova-system.svc.cluster.local:8081",
        "PDM_PDNS_API_KEY": "pdns-key"}
POOLS = ("omani.works", "openova.io")


def test_without_powerdns_every_pool_is_on_dynadot():
    s = load_settings({**BASE, "DYNADOT_API_KEY": "k"})
    assert s.pdns_base_url is None and s.pdns_api_key is None
    assert [s.dns_backend(p) for p in POOLS] == ["dynadot", "dynadot"]
    assert s.nameservers == DEFAULT_NAMESERVERS == ("ns1.openova.io", "ns2.openova.io", "ns3.openova.io")
    assert s.pdns_server_id == "localhost" and s.pool_dns == {} and s.ds_check_nameserver is None


def test_a_base_url_puts_every_pool_on_powerdns_and_needs_no_dynadot_key():
    s = load_settings(PDNS)
    assert s.pdns_base_url == "http://powerdns.openova-system.svc.cluster.local:8081"
    assert s.pdns_api_key == "pdns-key"
    assert [s.dns_backend(p) for p in s.managed_domains] == ["powerdns", "powerdns"]
    assert not s.dynadot_api_key
    # The key is a secret: never in the settings' repr (logged at start-up).
    assert "pdns-key" not in repr(s)


def test_the_base_url_loses_its_trailing_slash():
    assert load_settings({**PDNS, "PDM_PDNS_BASE_URL": "https://pdns.example:8081/"}).pdns_base_url == (
        "https://pdns.example:8081")


def test_pool_dns_overrides_the_default_per_pool():
    s = load_settings({**PDNS, "DYNADOT_API_KEY": "k", "PDM_POOL_DNS": "openova.io=dynadot"})
    assert s.pool_dns == {"openova.io": "dynadot"}
    assert (s.dns_backend("omani.works"), s.dns_backend("openova.io")) == ("powerdns", "dynadot")
    assert s.dynadot_api_key == "k"


def test_a_pool_back_on_dynadot_needs_the_dynadot_key_again():
    with pytest.raises(ConfigError, match="DYNADOT_API_KEY") as err:
        load_settings({**PDNS, "PDM_POOL_DNS": "openova.io=dynadot"})
    assert "openova.io" in str(err.value) and "omani.works" not in str(err.value)


def test_pool_dns_is_case_insensitive_and_unnamed_pools_follow_the_base_url():
    s = load_settings({**PDNS, "DYNADOT_API_KEY": "k", "PDM_POOL_DNS": "Omani.Works=powerdns, openova.io=dynadot",
                       "DYNADOT_MANAGED_DOMAINS": "omani.works,openova.io,x.io"})
    assert s.pool_dns == {"omani.works": "powerdns", "openova.io": "dynadot"}
    # Unnamed pools follow the base URL.
    assert s.dns_backend("x.io") == "powerdns"


@pytest.mark.parametrize("value", [
    "example.org=powerdns",  # not a managed pool
    "omani.works=route53",  # no such backend
    "omani.works",  # no backend at all
    "omani.works=",
    "omani.works=powerdns openova.io=bind",
])
def test_a_bad_pool_dns_names_the_variable(value):
    with pytest.raises(ConfigError, match="PDM_POOL_DNS"):
        load_settings({**PDNS, "DYNADOT_API_KEY": "k", "PDM_POOL_DNS": value})


def test_a_pool_on_powerdns_needs_the_base_url():
    with pytest.raises(ConfigError, match="PDM_PDNS_BASE_URL") as err:
        load_settings({**BASE, "DYNADOT_API_KEY": "k", "PDM_PDNS_API_KEY": "pdns-key",
                       "PDM_POOL_DNS": "omani.works=powerdns"})
    assert "omani.works" in str(err.value)


@pytest.mark.parametrize("key", ["", "   "])
def test_powerdns_needs_its_api_key(key):
    with pytest.raises(ConfigError, match="PDM_PDNS_API_KEY"):
        load_settings({**PDNS, "PDM_PDNS_API_KEY": key})


def test_no_powerdns_key_is_needed_when_no_pool_is_on_powerdns():
    s = load_settings({**BASE, "DYNADOT_API_KEY": "k", "PDM_PDNS_BASE_URL": "http://pdns:8081",
                       "PDM_POOL_DNS": "omani.works=dynadot openova.io=dynadot"})
    assert [s.dns_backend(p) for p in POOLS] == ["dynadot", "dynadot"]


@pytest.mark.parametrize("url", ["pdns:8081", "ftp://pdns", "http://", "http:// pdns"])
def test_a_bad_base_url_names_the_variable(url):
    with pytest.raises(ConfigError, match="PDM_PDNS_BASE_URL"):
        load_settings({**PDNS, "PDM_PDNS_BASE_URL": url})


@pytest.mark.parametrize("raw, expected", [
    ("ns1.example.net,ns2.example.net", ("ns1.example.net", "ns2.example.net")),
    (" NS1.Example.NET.  ns2.example.net\tns3.example.net ", ("ns1.example.net", "ns2.example.net",
                                                              "ns3.example.net")),
    ("ns1.example.net, ns1.example.net, ns2.example.net", ("ns1.example.net", "ns2.example.net")),
    ("a.b.example.co.uk", ("a.b.example.co.uk",)),
])
def test_nameservers_are_a_comma_or_space_list(raw, expected):
    assert load_settings({**PDNS, "PDM_NAMESERVERS": raw}).nameservers == expected


@pytest.mark.parametrize("raw", ["ns1", "ns_1.example.net", "ns1.example.net,ns2", "ns1.example.123", " , ",
                                 "-ns.example.net", "ns1..example.net", "http://ns1.example.net"])
def test_bad_nameservers_name_the_variable(raw):
    with pytest.raises(ConfigError, match="PDM_NAMESERVERS"):
        load_settings({**PDNS, "PDM_NAMESERVERS": raw})


@pytest.mark.parametrize("raw, expected", [("", "localhost"), ("  ", "localhost"), ("pdns-1.eu_west", "pdns-1.eu_west"),
                                           ("x" * 64, "x" * 64)])
def test_server_id(raw, expected):
    assert load_settings({**PDNS, "PDM_PDNS_SERVER_ID": raw}).pdns_server_id == expected


@pytest.mark.parametrize("raw", ["local host", "a/b", "../admin", "x" * 65, "id?x=1", "a%2fb"])
def test_a_bad_server_id_names_the_variable(raw):
    # It ends up in every API path.
    with pytest.raises(ConfigError, match="PDM_PDNS_SERVER_ID"):
        load_settings({**PDNS, "PDM_PDNS_SERVER_ID": raw})


@pytest.mark.parametrize("raw, expected", [("", None), ("127.0.0.1:5354", "127.0.0.1:5354"), ("9.9.9.9", "9.9.9.9"),
                                           ("  1.1.1.1  ", "1.1.1.1")])
def test_ds_check_nameserver(raw, expected):
    assert load_settings({**PDNS, "PDM_DS_CHECK_NAMESERVER": raw}).ds_check_nameserver == expected


@pytest.mark.parametrize("raw", ["1.1.1.1; rm -rf /", "https://dns.example/dns-query", "1.1.1.1 8.8.8.8",
                                 "[::1]:53"])
def test_a_bad_ds_check_nameserver_names_the_variable(raw):
    with pytest.raises(ConfigError, match="PDM_DS_CHECK_NAMESERVER"):
        load_settings({**PDNS, "PDM_DS_CHECK_NAMESERVER": raw})
