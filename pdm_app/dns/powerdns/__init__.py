"""PowerDNS as a pool's DNS host, one signed zone per tenant: ``client`` (its HTTP API),
``plan`` (pure: zones, keys, delegations), ``backend`` (the pass's ``ZoneBackend``) and
``ds_check`` (is the pool's DS published at its parent). Imports from ``pdm_app.dns``
below it and from the infrastructure modules, nothing above."""
