"""Dynadot as a pool's DNS host: ``client`` (its legacy ``api3.json``), ``plan`` (pure:
the whole zone to write back) and ``backend`` (the pass's ``ZoneBackend``). Imports from
``pdm_app.dns`` below it and from the infrastructure modules, nothing above."""
