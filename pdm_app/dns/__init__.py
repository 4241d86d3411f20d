"""The pool's DNS: everything that publishes and removes tenants' records, whatever hosts
a pool's zone. Layered bottom up; a module imports only from the layers below it.

- ``zone``, ``errors``: the records and zones every backend reads and writes, and what
  goes wrong with them.
- ``ownership``: what in a pool's DNS is the service's own (one rule for every backend).
- ``backend``: the protocol a backend implements (``ZoneBackend``), what the engine
  hands it (``Snapshot``, ``PassIO``) and what it hands back (``Converged``, drift).
- ``policy``: the rules every backend shares (repair thresholds, retry back-off, reads
  after a write that may land late).
- ``engine``: the pass (queue, lock, fencing, pacing, group commit, bookkeeping), and
  ``resync``: the retry job's round and the resync in slices. They know backends only by
  the protocol.
- One subpackage per DNS host, each a client, its pure planning and its backend:
  ``dynadot/`` (the pool's zone at the registrar), ``powerdns/`` (signed zones per
  tenant). A new host is a new folder beside them and one line in ``pdm_app.create_app``.

Below ``dns`` sit only the infrastructure modules (``unit_of_work``, ``locks``,
``metrics``, ``outbound``, ``redaction``) and ``domain``; nothing here imports the use
cases, the HTTP layer or ``pdm_app.testing``.
"""
