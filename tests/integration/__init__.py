"""The integration layer: the service on SQLite and PostgreSQL through the Flask test client
and the unit of work, with the fakes (Dynadot, customers' registrars) on loopback, all in
this process (``./dev test integration``).

A split module shares its test data by importing it from its unit half, never the reverse.
"""
