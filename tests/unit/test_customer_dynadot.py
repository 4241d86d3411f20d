"""DynadotRegistrar (a customer's own Dynadot account) without a server: its name and
propagation, the per-key lock (Dynadot serves one request at a time per key), and the
faults the fake knows. Against the fake on loopback: tests/integration/test_customer_dynadot.py."""
from __future__ import annotations

import uuid

import pytest

from pdm_app.customer_domains.dynadot import DynadotRegistrar, LocalKeyLocks, local_key_locks
from pdm_app.testing.fake_dynadot_ns import FAULTS, FakeDynadot

KEY = "dk-" + uuid.uuid4().hex
OTHER_KEY = "dk2-" + uuid.uuid4().hex


# -- validate -------------------------------------------------------------------------------

def test_name_and_propagation():
    adapter = DynadotRegistrar("http://127.0.0.1:9/api3.json")
    assert adapter.name == "dynadot"
    assert adapter.propagation == "dynadot: 30–60 min"


def test_local_key_locks():
    locks = LocalKeyLocks()
    with locks(KEY, 1):
        with pytest.raises(TimeoutError):
            with locks(KEY, 0.05):
                pass  # pragma: no cover
        with locks(OTHER_KEY, 0.05):
            assert len(locks) == 2
        assert KEY not in repr(locks.__dict__)  # kept as a digest
    assert len(locks) == 0  # nothing kept once nobody holds or waits
    assert DynadotRegistrar("http://127.0.0.1:9/api3.json")._key_lock is local_key_locks


def test_fake_knows_its_faults():
    with pytest.raises(ValueError):
        FakeDynadot().inject("meteor")
    assert {"http500", "reset", "timeout", "badjson", "raw", "throttle", "system_busy", "unknown_host",
            "invalid_key", "not_in_account"} <= set(FAULTS)
