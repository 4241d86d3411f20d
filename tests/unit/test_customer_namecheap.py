"""NamecheapRegistrar's set-up: a ClientIp that is not IPv4 is refused before any request.
Against FakeNamecheap on loopback: tests/integration/test_customer_namecheap.py."""
from __future__ import annotations

import pytest

from pdm_app.customer_domains.namecheap import NamecheapRegistrar


@pytest.mark.parametrize("client_ip", ["not-an-ip", "2001:db8::1", "203.0.113.300"])
def test_a_client_ip_that_is_not_ipv4_is_a_setup_error(client_ip):
    with pytest.raises(ValueError):
        NamecheapRegistrar("http://127.0.0.1:9/xml.response", client_ip=client_ip)
