"""gunicorn settings for pool-domain-manager (``gunicorn -c gunicorn.conf.py wsgi:app``)."""
import os
import sys
import tempfile


def _count(name: str, default: int) -> int:
    # A bad value is reported by on_starting (load_settings names the variable).
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
# Threads keep /check answering while commits wait on a slow registrar: at most
# PDM_DNS_MAX_WAITING_REQUESTS (4) of a worker's threads wait, each for at most
# PDM_DNS_REQUEST_BUDGET (bench/check_while_registrar_is_slow.py measures it).
workers = _count("GUNICORN_WORKERS", 2)
# gunicorn's gthread worker, whose own answers to requests it refuses (a header over
# limit_request_field_size, a request line over limit_request_line, ...) are the
# contract's JSON error body instead of an HTML page, and which leaves a new connection to
# a worker holding fewer (10 ms at most), so that a caller's few keep-alive connections
# spread over the workers instead of loading one.
worker_class = "pdm_app.gunicorn_worker.JsonErrorThreadWorker"
threads = _count("GUNICORN_THREADS", 8)
timeout = 60
graceful_timeout = 25  # inside Kubernetes' default 30 s grace period
accesslog = None  # the app logs one JSON line per request
logger_class = "pdm_app.gunicorn_worker.AppLogsOnlyLogger"
errorlog = "-"
# gunicorn's own lines (the arbiter's and the workers': booting, signals, timeouts,
# refused requests) are JSON on stdout like the service's: the root logger gets the
# service's handler (configure_logging reuses it in each worker), gunicorn.error
# propagates to it. PDM_LOG_LEVEL sets gunicorn's level too.
_level = os.environ.get("PDM_LOG_LEVEL", "").strip().lower() or "info"
loglevel = "warning" if _level == "warn" else _level
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "pdm_app.logs.JsonFormatter"}},
    "handlers": {"stdout": {"class": "pdm_app.logs.StdoutHandler", "formatter": "json"}},
    "root": {"level": "INFO", "handlers": ["stdout"]},
    "loggers": {
        # no "level": gunicorn's loglevel stays in force
        "gunicorn.error": {"handlers": [], "propagate": True},
        "gunicorn.access": {"handlers": [], "propagate": False},
    },
}
preload_app = False  # engines and the scheduler are built after the fork

# gunicorn's control socket would live under $HOME, which user 65534 does not have.
control_socket_disable = True

# prometheus_client's multiprocess mode: every worker writes its samples here and
# /metrics adds them up. It must exist, and be empty of an earlier run's samples, before
# anything imports prometheus_client (importing pdm_app does).
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(_metrics_dir, exist_ok=True)
    for _name in os.listdir(_metrics_dir):  # the folder may be a mount point: empty it
        if _name.endswith(".db"):
            os.remove(os.path.join(_metrics_dir, _name))
else:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pdm-metrics-")


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


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
