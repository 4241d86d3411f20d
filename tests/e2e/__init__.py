"""The end-to-end layer: whatever starts processes or real servers -- gunicorn, the real
PowerDNS (pdns_server), races across processes, killed workers, ``./dev`` itself, the
console script, the Helm chart and the Dockerfile (``./dev test e2e``).

A split module shares its test data by importing it from its unit or integration half.
"""
