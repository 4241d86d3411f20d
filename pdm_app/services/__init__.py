"""The use cases, by concern: what the service does, in domain terms.

- ``lifecycle``: the callers' lifecycle of a name -- check, reserve, commit, renew,
  release -- and the jobs that end it (the sweep of lapsed reservations, the pruning of
  old history).
- ``operators``: the operators' tools and views -- an allocation, the pool's list, its
  history, the pools, the pending DNS work, a DNS pass now, drift and reconcile -- and
  the figures health, readiness and metrics read.
- ``figures``: what /metrics reads of the database at scrape time, and the schema rule
  /readyz and ``pdm_ready`` share.
- ``base``: what both are built on.

Customers' own domains (nameserver flips) are ``pdm_app.customer_domains.flips``.

Every use case works through one unit of work (``pdm_app.unit_of_work.UnitOfWork``): one
transaction, and the queries that run in it. Every row change commits (with the DNS work
it implies) before the DNS host is called. The state transitions themselves live on
``domain.Allocation``, pure. Refusals are ``domain.DomainError`` with the contract's
codes; the HTTP layer and the CLI only map them to answers -- these modules know nothing
of Flask.

They may import ``domain``, ``unit_of_work``, ``models``, ``dns`` (engine, zone,
ownership, policy, backend types, errors, and ``DsCheck``, the answer of PowerDNS's DS
check), ``metrics`` and ``redaction``; never ``api``, ``cli`` or ``testing``.
"""
