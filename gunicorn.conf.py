"""gunicorn settings for pool-domain-manager (``gunicorn -c gunicorn.conf.py wsgi:app``)."""
import os
import sys
import tempfile

bind = f"0.0.0.0:{os.environ.get('PORT', '8080')}"
# Threads keep /check answering while commits wait on a slow registrar: at most
# PDM_DNS_MAX_WAITING_REQUESTS (4) of a worker's threads wait, each for at most
# PDM_DNS_REQUEST_BUDGET (bench/check_while_registrar_is_slow.py measures it).
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = 60
graceful_timeout = 25  # inside Kubernetes' default 30 s grace period
accesslog = None  # the app logs one JSON line per request
errorlog = "-"
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
