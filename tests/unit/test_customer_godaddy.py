"""The GoDaddy adapter without a server: its name, propagation and base URL. Against its
fake on loopback: tests/integration/test_customer_godaddy.py."""
from __future__ import annotations

from pdm_app.customer_domains.godaddy import GodaddyRegistrar


# -- the adapter: success ------------------------------------------------------------------------

def test_name_and_propagation():
    gd = GodaddyRegistrar("https://api.godaddy.com/")
    assert gd.name == "godaddy"
    assert gd.propagation == "godaddy: 1–4 h, up to 48 h"
    assert gd.base_url == "https://api.godaddy.com"
