"""The OVH adapter without a server: its endpoints, constants and settings, and the
request signature as OVH documents it. Against the fake OVH on loopback:
tests/integration/test_customer_ovh.py."""
from __future__ import annotations

import hashlib

import pytest

from pdm_app.customer_domains.ovh import APPLIES_LATER, ENDPOINTS, OvhRegistrar, endpoint_url, sign


# -- settings and constants ----------------------------------------------------------------

def test_endpoints_constants_and_settings():
    assert ENDPOINTS == {"ovh-eu": "https://eu.api.ovh.com/1.0", "ovh-ca": "https://ca.api.ovh.com/1.0",
                         "ovh-us": "https://api.us.ovhcloud.com/1.0"}
    assert endpoint_url("ovh-ca") == "https://ca.api.ovh.com/1.0"
    assert endpoint_url(" OVH-US ") == "https://api.us.ovhcloud.com/1.0"
    assert endpoint_url("http://127.0.0.1:9/1.0/") == "http://127.0.0.1:9/1.0"
    for bad in ("ovh-xx", "ftp://eu.api.ovh.com/1.0", "https://user:pw@eu.api.ovh.com/1.0"):
        with pytest.raises(ValueError):
            endpoint_url(bad)
    adapter = OvhRegistrar("ovh-eu")
    assert adapter.base_url == "https://eu.api.ovh.com/1.0"
    assert adapter.name == "ovh" and adapter.propagation == "ovh: async task queue, 1–4 h"
    assert APPLIES_LATER is True and adapter.applies_later is True


# -- signing and OVH's clock ---------------------------------------------------------------

def test_signature_matches_the_documented_formula():
    url = "https://eu.api.ovh.com/1.0/domain/acme.com/nameServers/update?x=1"
    body = '{"nameServers":[{"host":"ns1.example.net"}]}'
    expected = "$1$" + hashlib.sha1(
        b"SECRET+CONSUMER+POST+" + url.encode() + b"+" + body.encode() + b"+1700000000").hexdigest()
    assert sign("SECRET", "CONSUMER", "post", url, body, 1700000000) == expected
    # a GET signs an empty body
    get = "$1$" + hashlib.sha1(b"S+C+GET+https://eu.api.ovh.com/1.0/domain++42").hexdigest()
    assert sign("S", "C", "GET", "https://eu.api.ovh.com/1.0/domain", "", "42") == get
