"""The checks a customer's domain and nameservers pass before any provider is called."""
from __future__ import annotations

import pytest

from pdm_app.domain import DomainError
from pdm_app.customer_domains.flips import check_domain, check_nameservers, normalise_nameservers


@pytest.mark.parametrize("name", ["acme.com", "example.co.uk", "xn--80ak6aa92e.com", "a-b.io", "1password.com"])
def test_registrable_domains_pass(name):
    check_domain(name)


@pytest.mark.parametrize("name, why", [
    ("sov.acme.com", "subdomain of acme.com"),
    ("a.b.example.co.uk", "subdomain of example.co.uk"),
    ("co.uk", "public suffix"),
    ("com", "not a domain name"),
    ("acme.com/../../v1/domains", "not a domain name"),
    ("acme.com?x=1", "not a domain name"),
    ("acme .com", "not a domain name"),
    ("-acme.com", "not a domain name"),
    ("ac\u212ame.com", "not a domain name"),
    ("a" * 64 + ".com", "not a domain name"),
    ("acme..com", "not a domain name"),
])
def test_names_a_registrar_cannot_delegate_are_refused(name, why):
    with pytest.raises(DomainError) as err:
        check_domain(name)
    assert (err.value.code, err.value.status) == ("invalid-domain", 422)
    assert why in err.value.detail


def test_nameservers_are_normalised_in_first_seen_order():
    assert normalise_nameservers([" NS1.Example.net ", "", "ns2.example.net", "ns1.example.net"]) == [
        "ns1.example.net", "ns2.example.net"]


@pytest.mark.parametrize("names, why", [
    (["ns1.example.net"], "between 2 and 13"),
    ([f"ns{i}.example.net" for i in range(14)], "between 2 and 13"),
    (["ns1.example.net", "not a host"], "not a nameserver host name"),
    (["ns1.example.net", "localhost"], "not a nameserver host name"),
    (["ns1.example.net", "ns2.example.net/evil"], "not a nameserver host name"),
])
def test_bad_nameserver_lists_are_refused(names, why):
    with pytest.raises(DomainError) as err:
        check_nameservers(names)
    assert err.value.code == "invalid-nameservers" and why in err.value.detail


def test_two_to_thirteen_hosts_pass():
    check_nameservers(["ns1.example.net", "ns2.example.net"])
    check_nameservers([f"ns{i}.example.net" for i in range(13)])
