"""Fill a PowerDNS pool with N tenants fast, in the state the service itself leaves a
committed tenant in, for bench/growth.py.

Committing 10,000 tenants through the service would take longer than the benchmark, so
the service commits one tenant (the template) and this module copies it, row for row,
N times over:
- PowerDNS (gsqlite3, the server stopped): the template zone's ``domains``, ``records``
  (``ordername``/``auth`` as PowerDNS's rectify left them: the relative names are the
  same in every tenant zone) and ``domainmetadata`` rows with the name changed; a new
  ECDSA P-256 key per zone in ``cryptokeys`` (the ISC private-key format PowerDNS
  stores); and in the pool's zone the template's NS rows and a DS row at each name,
  with that key's SHA-256 DS (dnspython's ``make_ds``, as PowerDNS computes it: growth.py
  checks a sample against the API's ``ds``).
- The service's database: the template's ``pool_allocations`` row (its own token hash per
  tenant), ``dns_owned_hosts`` and ``allocation_history`` rows, with the name changed.
  ``pool_zones`` is left as the template's commit left it.
growth.py then proves the copy is the service's own state: a full resync writes nothing.
"""
from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import warnings

import psycopg
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.utils import CryptographyDeprecationWarning

with warnings.catch_warnings():
    # dnspython's DSA support, imported with dns.dnssec, is deprecated in cryptography: not used here.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    import dns.dnssec
import dns.name  # noqa: E402
import dns.rdata  # noqa: E402
import dns.rdataclass  # noqa: E402
import dns.rdatatype  # noqa: E402

ISC_KEY = "Private-key-format: v1.2\nAlgorithm: 13 (ECDSAP256SHA256)\nPrivateKey: {}\n"


def new_key() -> tuple[str, str]:
    """(PowerDNS's stored private key, the DNSKEY's public key in base64) of a new P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    d = key.private_numbers().private_value.to_bytes(32, "big")
    pub = key.public_key().public_numbers()
    point = pub.x.to_bytes(32, "big") + pub.y.to_bytes(32, "big")
    return ISC_KEY.format(base64.b64encode(d).decode()), base64.b64encode(point).decode()


def sha256_ds(zone: str, public_b64: str) -> str:
    """The DS line (digest type 2) PowerDNS lists for a CSK (flags 257, algorithm 13)."""
    dnskey = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DNSKEY, f"257 3 13 {public_b64}")
    return dns.dnssec.make_ds(dns.name.from_text(zone), dnskey, "SHA256").to_text()


def _renamed(name: str, old: str, new: str) -> str:
    """``name`` (at or under ``old``) moved under ``new``."""
    return new if name == old else name[: -len(old)] + new


def load_powerdns(db_path: str, pool: str, template: str, subs: list[str]) -> dict[str, str]:
    """Add a tenant zone per name in ``subs``, copied from ``template``'s, and its
    delegation in the pool's zone. Returns sub -> its DS line."""
    old = f"{template}.{pool}"
    db = sqlite3.connect(db_path)
    try:
        (pool_id,) = db.execute("SELECT id FROM domains WHERE name = ?", (pool,)).fetchone()
        tid, ttype, taccount = db.execute("SELECT id, type, account FROM domains WHERE name = ?", (old,)).fetchone()
        zone_records = db.execute("SELECT name, type, content, ttl, prio, disabled, ordername, auth FROM records "
                                  "WHERE domain_id = ?", (tid,)).fetchall()
        meta = db.execute("SELECT kind, content FROM domainmetadata WHERE domain_id = ?", (tid,)).fetchall()
        ns_rows = db.execute("SELECT content, ttl, prio, disabled, auth FROM records WHERE domain_id = ? AND name = ? "
                             "AND type = 'NS'", (pool_id, old)).fetchall()
        ds_ttl, ds_auth = db.execute("SELECT ttl, auth FROM records WHERE domain_id = ? AND name = ? AND type = 'DS'",
                                     (pool_id, old)).fetchone()
        (first,) = db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM domains").fetchone()
        ids = {sub: first + i for i, sub in enumerate(subs)}
        db.executemany("INSERT INTO domains (id, name, master, type, account) VALUES (?, ?, '', ?, ?)",
                       [(ids[sub], f"{sub}.{pool}", ttype, taccount) for sub in subs])
        records, keys, metadata, delegations, ds_of = [], [], [], [], {}
        for sub in subs:
            new = f"{sub}.{pool}"
            zid = ids[sub]
            for name, rtype, content, ttl, prio, disabled, ordername, auth in zone_records:
                if rtype == "SOA":
                    content = content.replace(f"hostmaster.{old}", f"hostmaster.{new}")
                records.append((zid, _renamed(name, old, new), rtype, content, ttl, prio, disabled, ordername, auth))
            private, public = new_key()
            keys.append((zid, private))
            metadata += [(zid, kind, content) for kind, content in meta]
            ds_of[sub] = sha256_ds(new, public)
            delegations += [(pool_id, new, "NS", content, ttl, prio, disabled, sub, auth)
                            for content, ttl, prio, disabled, auth in ns_rows]
            delegations.append((pool_id, new, "DS", ds_of[sub], ds_ttl, 0, 0, sub, ds_auth))
        insert = ("INSERT INTO records (domain_id, name, type, content, ttl, prio, disabled, ordername, auth) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        db.executemany(insert, records)
        db.executemany(insert, delegations)
        db.executemany("INSERT INTO cryptokeys (domain_id, flags, active, published, content) VALUES (?, 257, 1, 1, ?)",
                       keys)
        db.executemany("INSERT INTO domainmetadata (domain_id, kind, content) VALUES (?, ?, ?)", metadata)
        db.commit()
    finally:
        db.close()
    return ds_of


def load_database(url: str, pool: str, template: str, subs: list[str]) -> None:
    """The rows of a committed tenant per name in ``subs``, copied from ``template``'s."""
    with psycopg.connect(url) as conn:
        cols = [c.name for c in conn.execute("SELECT * FROM pool_allocations LIMIT 0").description]
        row = dict(zip(cols, conn.execute("SELECT * FROM pool_allocations WHERE pool_domain = %s AND subdomain = %s",
                                          (pool, template)).fetchone()))
        events = conn.execute("SELECT action, caller, at, load_balancer_ip, detail FROM allocation_history "
                              "WHERE pool_domain = %s AND subdomain = %s ORDER BY id", (pool, template)).fetchall()
        with conn.cursor() as cur:
            with cur.copy(f"COPY pool_allocations ({', '.join(cols)}) FROM STDIN") as copy:
                for sub in subs:
                    token = hashlib.sha256(os.urandom(32)).hexdigest()
                    copy.write_row([sub if c == "subdomain" else token if c == "reservation_token" else row[c]
                                    for c in cols])
            with cur.copy("COPY dns_owned_hosts (pool_domain, host, subdomain) FROM STDIN") as copy:
                for sub in subs:
                    copy.write_row((pool, sub, sub))
            with cur.copy("COPY allocation_history (pool_domain, subdomain, action, caller, at, load_balancer_ip, "
                          "detail) FROM STDIN") as copy:
                for sub in subs:
                    for action, caller, at, ip, detail in events:
                        copy.write_row((pool, sub, action, caller, at, ip, detail))
        conn.execute("ANALYZE")
