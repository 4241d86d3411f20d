"""Test doubles shipped apart from the service (as ``sqlalchemy.testing`` is): real HTTP
servers on loopback that answer as the outside services do, strict where they are strict.

- ``fake_server``: what every fake shares (the server thread, faults, slow answers).
- ``fake_dynadot``: Dynadot's ``api3.json`` as a pool's DNS host (``./dev run`` runs it).
- ``fake_cloudflare``, ``fake_dynadot_ns``, ``fake_godaddy``, ``fake_namecheap``,
  ``fake_ovh``: the customers' registrars, for nameserver flips.
- ``local_powerdns``: a throwaway ``pdns_server`` with its SQLite backend.
- ``webhook_receiver``: a consumer of the service's webhooks that verifies every
  signature with ``standardwebhooks``, records each delivery, and answers 500, 410, 429,
  301, stalls or goes down on demand.

Only the tests, ``bench/`` and ``./dev`` import this package; nothing the service runs
does (``tests/unit/test_layers.py`` checks), and the Docker image leaves it out.
"""
