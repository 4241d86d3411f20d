"""The HTTP layer: Flask blueprints that parse a request (``body``, ``schemas``), call one
use case and answer; the contract's error bodies (``errors``), who may call what
(``access``, ``ratelimit``), health and the OpenAPI document. No rule lives here."""
