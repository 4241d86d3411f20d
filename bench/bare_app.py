"""The bare endpoint: the least a Flask + SQLAlchemy (psycopg 3) app can do to answer
``check`` -- the same primary-key select, a small JSON answer, nothing else (no auth, no
validation, no request log, no metrics, no pool pre-ping). bench/run.py serves it with
plain gunicorn and the service's worker settings:

    BARE_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/pdm_bench \\
        .venv/bin/python -m gunicorn -k gthread -w 2 --threads 8 -b 127.0.0.1:8090 \\
        --chdir bench bare_app:app

    GET /api/v1/pool/<pool>/check?sub=<name>  ->  {"available": true, "fqdn": "..."}
"""
from __future__ import annotations

import os
from datetime import datetime, timezone

from flask import Flask, jsonify, request
from sqlalchemy import create_engine, text


def _url() -> str:
    url = os.environ.get("BARE_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/pdm_bench")
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


THREADS = int(os.environ.get("BARE_THREADS", "8"))
# Built at import, which is in each worker (no --preload): a pool holding a connection
# per request thread, so steady load opens none.
engine = create_engine(_url(), pool_size=THREADS, max_overflow=2)
SELECT = text("SELECT state, expires_at FROM pool_allocations WHERE pool_domain = :p AND subdomain = :s")

app = Flask(__name__)


@app.get("/api/v1/pool/<pool>/check")
def check(pool: str):
    sub = request.args.get("sub", "")
    with engine.connect() as conn:
        row = conn.execute(SELECT, {"p": pool, "s": sub}).first()
    if row is None or (row.state == "reserved" and row.expires_at is not None
                       and row.expires_at <= datetime.now(timezone.utc)):
        return jsonify(available=True, fqdn=f"{sub}.{pool}")
    return jsonify(available=False, reason=f"{row.state}-state", fqdn=f"{sub}.{pool}")


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")
