"""Names and addresses a tenant may have, as the rules in pdm_app.domain decide them:
ASCII labels only, valid IDNA 2008 A-labels that do not display as a reserved label, and
a load-balancer address that is public unicast IPv4 (or in a lab's allowed ranges). The
same rules through the endpoints, on both databases: tests/integration/test_names.py."""
from __future__ import annotations

import ipaddress
import sys

import idna
import pytest

from conftest import POOL
from pdm_app import domain
from pdm_app.config import ConfigError, load_settings, parse_ip_ranges
from pdm_app.domain import DomainError

PUBLIC_LB = "185.53.179.10"
KELVIN = "\u212a"  # KELVIN SIGN: str.lower() makes it an ASCII "k"


def a_label(ulabel: str) -> str:
    return idna.encode(ulabel).decode("ascii")


def refusal(fn, *args) -> DomainError:
    with pytest.raises(DomainError) as caught:
        fn(*args)
    return caught.value


# -- the pure rules -------------------------------------------------------------------

def test_normalise_lower_cases_ascii_only():
    assert domain.normalise("  AcMe\t") == "acme"
    assert domain.normalise(None) == ""
    # Not folded onto an ASCII name, not trimmed of Unicode spaces: left for validation.
    assert domain.normalise(f"{KELVIN}afka") == f"{KELVIN}afka"
    assert domain.normalise("acme\u00a0") == "acme\u00a0"
    assert domain.normalise("\u3000acme") == "\u3000acme"


def test_every_character_that_lower_cases_to_ascii_is_refused():
    folding = [chr(c) for c in range(0x80, sys.maxunicode + 1)
               if not 0xD800 <= c < 0xE000 and chr(c).lower().isascii()]
    assert KELVIN in folding
    for char in folding:
        err = refusal(domain.validate_subdomain, domain.normalise(f"{char}afka"))
        assert err.code == "invalid-format" and err.status == 422
        assert f"U+{ord(char):04X}" in err.detail and "ASCII" in err.detail


@pytest.mark.parametrize("sub", ["caf\u00e9", "acme\u00a0", "\u0430dmin", "acme\u2028"])
def test_non_ascii_is_invalid_format(sub):
    err = refusal(domain.validate_subdomain, domain.normalise(sub))
    assert err.code == "invalid-format" and "xn--" in err.detail


def test_label_rule_is_the_whole_string():
    assert domain.is_valid_label("acme")
    assert not domain.is_valid_label("acme\n")
    assert refusal(domain.validate_subdomain, "acme\n").code == "invalid-format"


@pytest.mark.parametrize("sub", [
    "xn--caf-dma",  # café
    "xn--e1afmkfd",  # пример
    "xn--mnchen-3ya",  # münchen
    "xn--mller-kva",  # müller
])
def test_valid_a_labels_pass(sub):
    domain.validate_subdomain(sub)
    assert not domain.is_reserved(sub)
    assert domain.lookalike_problem(sub) is None


@pytest.mark.parametrize("ulabel", [
    "\u65e5\u672c\u8a9e\u30c6\u30b9\u30c8",  # 日本語テスト: Han + Katakana, one writing system
    "\ud55c\uad6d\uc5b4",  # 한국어
    "\u4e2d\u6587\u3105",  # 中文ㄅ: Han + Bopomofo
    "\u043f\u0440\u0438\u043c\u0435\u0440-2",  # пример-2: digits and '-' belong to no script
])
def test_one_writing_system_passes(ulabel):
    assert domain.lookalike_problem(a_label(ulabel)) is None


@pytest.mark.parametrize("ulabel, scripts", [
    ("\u0430pple", "Cyrillic, Latin"),  # Cyrillic а in a Latin word
    ("p\u0430y\u03c1al", "Latin, Cyrillic, Greek"),
    ("abc\u682a\u5f0f\u4f1a\u793e", "Latin, Han"),  # Latin beside Han: not allowed in one label
    ("\u3072\u3089\ud55c", "Hiragana, Hangul"),  # Japanese and Korean
])
def test_mixed_scripts_are_invalid_format(ulabel, scripts):
    sub = a_label(ulabel)
    domain.validate_subdomain(sub)  # a well-formed A-label, not held by anyone...
    problem = domain.lookalike_problem(sub)  # ...that no new tenant gets
    assert problem and "mixes scripts" in problem and scripts in problem
    err = refusal(domain.Allocation.reserve, POOL, sub, "t", "token", domain.utcnow(), 60)
    assert (err.code, err.status) == ("invalid-format", 422)


@pytest.mark.parametrize("sub, looks_like", [
    ("xn--80ak6aa92e", "apple"),  # аррӏе, all Cyrillic
    ("xn--80akut", "acme"),  # асме
    (a_label("\u03bf\u03b9"), "oi"),  # Greek οι
])
def test_a_label_that_only_looks_like_an_ascii_name_is_invalid_format(sub, looks_like):
    problem = domain.lookalike_problem(sub)
    assert problem and f"plain ASCII name {looks_like!r}" in problem


def test_a_label_skeletons_compare_a_labels():
    muller, lookalike = "xn--mller-kva", a_label("m\u00fc\u0142\u0142er")  # müller, müłłer
    assert domain.lookalike_problem(lookalike) is None  # Latin only, not ASCII-looking
    assert domain.lookalike_of(lookalike, {muller, "xn--caf-dma"}) == muller
    assert domain.lookalike_of(muller, {muller}) is None  # not a lookalike of itself
    assert domain.lookalike_of("xn--caf-dma", {muller}) is None
    assert domain.lookalike_of("muller", {muller}) is None  # only A-labels


def test_a_name_that_is_or_holds_another_pool():
    pools = ("omani.works", "a.b.omani.works", "openova.io")
    assert domain.managed_pool_at("a", "b.omani.works", pools) == "a.b.omani.works"
    assert domain.managed_pool_at("b", "omani.works", pools) == "a.b.omani.works"
    assert domain.managed_pool_at("ab", "omani.works", pools) is None
    assert domain.managed_pool_at("b", "openova.io", pools) is None


@pytest.mark.parametrize("sub, why", [
    ("xn--zz", "Invalid A-label"),  # not Punycode
    ("xn--ls8h", "U+1F4A9"),  # an emoji: DISALLOWED in IDNA 2008 (IDNA 2003 allowed it)
    ("xn--a-ecp", "U+2488"),  # DIGIT ONE FULL STOP: DISALLOWED
    ("xn--a", "U+0080"),
    ("xn--ab-7tb", "combining"),  # U+0301 COMBINING ACUTE ACCENT at the start of the label
])
def test_invalid_a_labels_are_invalid_format(sub, why):
    err = refusal(domain.validate_subdomain, sub)
    assert err.code == "invalid-format" and "IDNA 2008" in err.detail and why in err.detail


@pytest.mark.parametrize("ulabel, reserved", [
    ("\u0430dmin", "admin"),  # Cyrillic а
    ("v\u0430ult", "vault"),
    ("\u0441\u043ens\u043ele", "console"),  # Cyrillic с, о, о
    ("k8\u0455", "k8s"),  # Cyrillic ѕ
    ("g\u0456tea", "gitea"),  # Ukrainian і
    ("\u051d\u051d\u051d", "www"),  # Cyrillic ԝ
    ("c\u0966nsole", "console"),  # DEVANAGARI DIGIT ZERO
    ("\u0251pi", "api"),  # LATIN SMALL LETTER ALPHA
])
def test_a_label_displaying_as_a_reserved_label_is_reserved(ulabel, reserved):
    sub = a_label(ulabel)
    domain.validate_subdomain(sub)  # a well-formed A-label...
    assert domain.reserved_lookalike(sub) == reserved  # ...that shows as a reserved one
    assert domain.is_reserved(sub) and domain.is_reserved(sub.upper())


def test_lookalike_is_only_about_a_labels():
    assert domain.reserved_lookalike("admin") is None  # reserved itself, not a lookalike
    assert domain.reserved_lookalike("acme") is None
    assert domain.reserved_lookalike("xn--zz") is None  # invalid: refused as invalid-format first
    assert domain.is_reserved("admin") and not domain.is_reserved("acme")


# -- load-balancer addresses ------------------------------------------------------------

REFUSED = [
    ("0.0.0.0", "unspecified"),
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.254", "private"),
    ("192.168.1.10", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.1", "private"),
    ("100.64.0.1", "not globally reachable"),
    ("100.127.255.254", "not globally reachable"),
    ("169.254.169.254", "link-local"),
    ("169.254.1.1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.1", "private"),  # documentation ranges: not global either
    ("198.51.100.7", "private"),
    ("203.0.113.9", "private"),
    ("198.18.0.1", "private"),  # benchmarking
]


@pytest.mark.parametrize("ip, why", REFUSED)
def test_non_public_addresses_are_refused(ip, why):
    err = refusal(domain.validate_ipv4, ip)
    assert (err.code, err.status) == ("invalid-lb-ip", 422)
    assert why in err.detail and ip in err.detail and "public IPv4" in err.detail


@pytest.mark.parametrize("ip", [PUBLIC_LB, "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "223.255.255.254"])
def test_public_unicast_addresses_pass(ip):
    domain.validate_ipv4(ip)


def test_not_an_address_keeps_its_codes():
    assert refusal(domain.validate_ipv4, "").code == "missing-lb-ip"
    for bad in ("300.1.1.1", "2001:db8::1", "10.0.0", "010.0.0.1", " 8.8.8.8"):
        err = refusal(domain.validate_ipv4, bad)
        assert err.code == "invalid-lb-ip" and "not an IPv4 address" in err.detail


def test_allowed_ranges_open_private_ranges_only():
    lab = parse_ip_ranges("10.0.0.0/8, 100.64.0.0/10 192.0.2.0/24")
    for ip in ("10.1.2.3", "100.64.0.1", "192.0.2.77"):
        domain.validate_ipv4(ip, lab)
    assert "private" in refusal(domain.validate_ipv4, "192.168.0.1", lab).detail
    # whatever a lab allows, these are never published
    everything = (ipaddress.IPv4Network("0.0.0.0/0"),)
    for ip, why in REFUSED:
        if why in ("unspecified", "loopback", "link-local", "multicast", "reserved"):
            assert why in refusal(domain.validate_ipv4, ip, everything).detail
        else:
            domain.validate_ipv4(ip, everything)


def test_allowed_ranges_setting():
    env = {"DYNADOT_API_KEY": "k", "PDM_AUTH": "disabled"}
    assert load_settings(env).lb_ip_allowed_ranges == ()
    settings = load_settings({**env, "PDM_LB_IP_ALLOWED_RANGES": " 10.0.0.0/8,192.168.0.0/16  172.16.0.0/12 "})
    assert settings.lb_ip_allowed_ranges == tuple(map(ipaddress.IPv4Network,
                                                      ("10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12")))
    for bad in ("10.0.0.1/8", "10.0.0.0/33", "2001:db8::/32", "lab", "127.0.0.0/8", "169.254.0.0/16",
                "224.0.0.0/4", "240.0.0.0/4"):
        with pytest.raises(ConfigError, match="PDM_LB_IP_ALLOWED_RANGES"):
            load_settings({**env, "PDM_LB_IP_ALLOWED_RANGES": bad})
