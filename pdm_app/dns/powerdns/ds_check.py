"""Whether a pool's registrar publishes the pool's DS: the last link of the chain of trust,
which only an operator can add (at the registrar of the pool domain). Asked of a
resolver over DNS, as any validator would see it."""
from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.rdatatype
import dns.resolver

from ...config import split_host_port
from .plan import sha256_ds

PUBLISHED = "published"
MISSING = "missing"
DIFFERENT = "different"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class DsCheck:
    status: str  # published, missing, different, unknown
    found: tuple[str, ...] = ()
    detail: str = ""


def _resolver(nameserver: str | None, timeout: float) -> dns.resolver.Resolver:
    if nameserver is None:
        resolver = dns.resolver.Resolver()
    else:
        host, port = split_host_port(nameserver)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        if port is not None:
            resolver.port = port
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


def check_ds(pool: str, expected: tuple[str, ...], nameserver: str | None, timeout: float = 3.0) -> DsCheck:
    """``expected``: the pool zone's DS lines (SHA-256). Published when the DS RRset the
    resolver answers holds one of them."""
    if not expected:
        return DsCheck(UNKNOWN, detail="the pool's zone has no key yet (the job leader signs it)")
    try:
        answer = _resolver(nameserver, timeout).resolve(pool.rstrip(".") + ".", dns.rdatatype.DS,
                                                        raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return DsCheck(MISSING, detail=f"{pool} is not delegated where the resolver looks (NXDOMAIN); its "
                                       f"registrar must publish its NS and the DS {' / '.join(expected)}")
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        return DsCheck(UNKNOWN, detail=f"the DS of {pool} could not be looked up ({type(exc).__name__})")
    found = sha256_ds(rdata.to_text() for rdata in answer.rrset or ())
    if not found:
        return DsCheck(MISSING, detail=f"no DS for {pool} is published: add {' / '.join(expected)} at its registrar")
    if set(found) & set(expected):
        return DsCheck(PUBLISHED, found)
    return DsCheck(DIFFERENT, found, f"the DS published for {pool} is not its key's: replace it with "
                                     f"{' / '.join(expected)} at its registrar")
