"""The WSGI entry point: ``gunicorn -c gunicorn.conf.py wsgi:app``."""
import sys

from pdm_app import create_app
from pdm_app.config import ConfigError

try:
    app = create_app()
except ConfigError as err:
    print(f"pool-domain-manager: configuration error: {err}", file=sys.stderr)
    sys.exit(2)
