"""DynadotClient's redaction: the API key never leaks into what it reports. Against the
fake api3.json on loopback: tests/integration/test_registrar_dynadot.py."""
from __future__ import annotations

from pdm_app.redaction import redact
from pdm_app.dns.dynadot.client import DynadotClient


def test_redact():
    DynadotClient("http://127.0.0.1:9/api3.json", "plain+key/with=chars")
    assert "plain" not in redact("url?key=plain%2Bkey%2Fwith%3Dchars&command=x")
    assert redact("plain+key/with=chars failed") == "*** failed"
    assert redact("GET /api3.json?key=unregistered&command=get_dns") == "GET /api3.json?key=***&command=get_dns"
