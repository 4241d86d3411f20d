"""The unit layer: the rules, planning, config, schemas and the adapters' pure helpers.

No database, no network, no process, no file beyond tmp_path; the whole layer runs in
seconds (``./dev test unit``). Its tests may use conftest's constants and helpers, never
its database, app or fake fixtures (tests/unit/conftest.py refuses them).
"""
