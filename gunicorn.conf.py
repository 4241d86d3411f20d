"""gunicorn settings for pool-domain-manager (``gunicorn -c gunicorn.conf.py wsgi:app``)."""
import os
import sys

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
# Threads keep /check answering while a commit waits on a slow registrar (bounded by
# PDM_DNS_REQUEST_BUDGET).
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 60
graceful_timeout = 25  # inside Kubernetes' default 30 s grace period
accesslog = None  # the app logs its own requests
errorlog = "-"
preload_app = False  # engines and the scheduler are built after the fork


def on_starting(server):
    # Fail once, with one clear line, before any worker boots.
    from pdm_app.config import ConfigError, load_settings

    try:
        load_settings()
    except ConfigError as err:
        print(f"pool-domain-manager: configuration error: {err}", file=sys.stderr)
        sys.exit(2)


def post_worker_init(worker):
    pdm = worker.wsgi.extensions["pdm"]
    if pdm.settings.run_jobs:
        pdm.jobs.start()


def worker_exit(server, worker):
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        app.extensions["pdm"].jobs.stop()
