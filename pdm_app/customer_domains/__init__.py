"""Customers' own domains (bring your own domain): their registrars, reached with the
customer's credentials to validate them and flip the domain's nameservers. ``base``
holds the adapters' interface and the rules every adapter keeps; one module per provider
(``cloudflare``, ``dynadot``, ``godaddy``, ``namecheap``, ``ovh``); ``flips`` is the use
case the HTTP layer calls. Unrelated to the pool's DNS (``pdm_app.dns``); the fakes of
these APIs live in ``pdm_app.testing``."""
from __future__ import annotations

from .base import CustomerRegistrar, KeyLock

# The providers' own API addresses (a setting per provider overrides each).
DEFAULT_URLS = {
    "cloudflare": "https://api.cloudflare.com/client/v4",
    "namecheap": "https://api.namecheap.com/xml.response",
    "godaddy": "https://api.godaddy.com",
    "dynadot": "https://api.dynadot.com/api3.json",
}

def build_registry(urls: dict[str, str], *, namecheap_client_ip: str | None, ovh_endpoint: str,
                   dynadot_key_lock: KeyLock) -> dict[str, CustomerRegistrar]:
    """Every supported provider's adapter, by name."""
    from .cloudflare import CloudflareRegistrar
    from .dynadot import DynadotRegistrar
    from .godaddy import GodaddyRegistrar
    from .namecheap import NamecheapRegistrar
    from .ovh import ENDPOINTS, OvhRegistrar

    def url(name: str, default: str) -> str:
        return urls.get(name) or default

    adapters: list[CustomerRegistrar] = [
        CloudflareRegistrar(url("cloudflare", DEFAULT_URLS["cloudflare"])),
        NamecheapRegistrar(url("namecheap", DEFAULT_URLS["namecheap"]), client_ip=namecheap_client_ip),
        GodaddyRegistrar(url("godaddy", DEFAULT_URLS["godaddy"])),
        OvhRegistrar(url("ovh", ENDPOINTS[ovh_endpoint])),
        DynadotRegistrar(url("dynadot", DEFAULT_URLS["dynadot"]), key_lock=dynadot_key_lock),
    ]
    return {adapter.name: adapter for adapter in adapters}
