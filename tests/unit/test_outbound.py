"""The bounded JSON reader of pdm_app.outbound without a server: deep nesting and
non-JSON are value errors. Against real HTTP servers on loopback: tests/integration/test_outbound.py."""
from __future__ import annotations

import pytest

from pdm_app import bounded_json


def test_bounded_json_refuses_deep_nesting_and_non_json_as_value_errors():
    assert bounded_json.parse(b'{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}
    assert bounded_json.parse("[" * 32 + "]" * 32) is not None
    for text in ("[" * 33 + "]" * 33, "[" * 200_000, "<html>proxy error</html>", "NaN", b"\xff\xfe"):
        with pytest.raises(ValueError):
            bounded_json.parse(text)
    # Brackets inside strings do not count.
    assert bounded_json.parse('["' + "[" * 100 + '"]') == ["[" * 100]
