"""The auth settings: the modes (PDM_AUTH: tokens, operators, disabled), the tokens from
the environment and from a file, and every bad value named without its secret. The
tokens at work on the endpoints: tests/integration/test_auth.py."""
from __future__ import annotations

import pytest

from pdm_app.auth import AUTH_DISABLED, AUTH_OPERATORS, AUTH_TOKENS
from pdm_app.config import ConfigError, load_settings

CLIENT_SECRET = "client-secret-0123456789abcdef"
OPERATOR_SECRET = "operator-secret-0123456789abcdef"


# -- settings ------------------------------------------------------------------------------

BASE = {"DYNADOT_API_KEY": "k"}


def test_no_tokens_refuses_to_start_unless_operators_or_disabled():
    for env in (BASE, {**BASE, "PDM_AUTH": "tokens"}, {**BASE, "PDM_AUTH": "enabled"}, {**BASE, "PDM_AUTH": ""}):
        with pytest.raises(ConfigError, match="PDM_AUTH=tokens") as err:
            load_settings(env)
        # the message names the ways out
        assert "PDM_AUTH=operators" in str(err.value) and "PDM_AUTH=disabled" in str(err.value)
    disabled = load_settings({**BASE, "PDM_AUTH": "disabled"})
    assert disabled.auth_enabled is False and disabled.effective_auth_mode == AUTH_DISABLED
    operators = load_settings({**BASE, "PDM_AUTH": "operators"})
    assert operators.auth_mode == operators.effective_auth_mode == AUTH_OPERATORS
    assert operators.auth_enabled is True and operators.api_tokens == ()


@pytest.mark.parametrize("value, mode", [
    ("", AUTH_TOKENS), ("tokens", AUTH_TOKENS), ("enabled", AUTH_TOKENS), (" Enabled ", AUTH_TOKENS),
    ("operators", AUTH_OPERATORS), ("OPERATORS", AUTH_OPERATORS), ("disabled", AUTH_DISABLED),
])
def test_auth_mode_values(value, mode):
    settings = load_settings({**BASE, "PDM_AUTH": value, "PDM_API_TOKENS": f"cat:client:{CLIENT_SECRET}"})
    assert settings.effective_auth_mode == mode
    assert settings.auth_enabled is (mode != AUTH_DISABLED)


@pytest.mark.parametrize("value", ["open", "true", "false", "none", "operator"])
def test_unknown_auth_mode_is_named(value):
    with pytest.raises(ConfigError, match=r"PDM_AUTH=.*must be operators, tokens or disabled"):
        load_settings({**BASE, "PDM_AUTH": value})


def test_operators_mode_accepts_tokens_too(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"ops:operator:{OPERATOR_SECRET}\n")
    s = load_settings({**BASE, "PDM_AUTH": "operators", "PDM_API_TOKENS_FILE": str(path)})
    assert s.effective_auth_mode == AUTH_OPERATORS and [t.name for t in s.api_tokens] == ["ops"]


def test_tokens_from_env_and_file(tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# mounted secret\nops:operator:{OPERATOR_SECRET}\n\n")
    s = load_settings({**BASE, "PDM_API_TOKENS": f"cat:client:{CLIENT_SECRET}", "PDM_API_TOKENS_FILE": str(path)})
    assert s.auth_enabled and [(t.name, t.role) for t in s.api_tokens] == [("cat", "client"), ("ops", "operator")]
    assert CLIENT_SECRET not in repr(s)


@pytest.mark.parametrize(
    "value, message",
    [
        ("cat:client", "name:role:secret"),
        ("cat:admin:0123456789abcdef0", "role"),
        ("cat:client:short", "shorter"),
        (f"a:client:{CLIENT_SECRET},a:operator:{OPERATOR_SECRET}", "twice"),
        (f"a:client:{CLIENT_SECRET},b:operator:{CLIENT_SECRET}", "share"),
    ],
)
def test_bad_tokens_are_named_without_the_secret(value, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_settings({**BASE, "PDM_API_TOKENS": value})
    assert CLIENT_SECRET not in str(err.value) and OPERATOR_SECRET not in str(err.value)


def test_unreadable_token_file(tmp_path):
    with pytest.raises(ConfigError, match="PDM_API_TOKENS_FILE"):
        load_settings({**BASE, "PDM_API_TOKENS_FILE": str(tmp_path / "missing")})
