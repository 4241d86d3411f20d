"""The worker's accept: a worker holding more connections than a live sibling leaves a new
connection to it, and takes it itself after ACCEPT_WAIT when the sibling has not."""
from __future__ import annotations

import os
import selectors
import socket
from concurrent import futures
from unittest import mock

import pytest
from gunicorn.config import Config

from pdm_app import gunicorn_worker
from pdm_app.gunicorn_worker import BalancedThreadWorker


@pytest.fixture
def listener():
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.setblocking(False)
        yield sock


@pytest.fixture
def workers(listener):
    """Two workers of this process sharing ``listener``, set up as gunicorn's worker loop
    sets itself up (without running it)."""
    made = []

    def make(holding: int) -> BalancedThreadWorker:
        worker = BalancedThreadWorker(len(made) + 1, os.getppid(), [listener], None, 30, Config(), mock.Mock())
        worker.pid = os.getpid()
        worker.nr_conns = holding
        worker.tpool = futures.ThreadPoolExecutor(1)
        worker.poller = selectors.DefaultSelector()
        worker.method_queue.init()
        worker.poller.register(worker.method_queue.fileno(), selectors.EVENT_READ, worker.method_queue.run_callbacks)
        worker.set_accept_enabled(True)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.alive = False
        worker.tpool.shutdown(wait=False)
        worker.poller.close()
        worker.method_queue.close()
        gunicorn_worker._PIDS[worker._slot] = gunicorn_worker._HELD[worker._slot] = 0


def accepted(worker, listener) -> bool:
    """Whether the worker took the connection waiting on ``listener`` (it hands every one
    it takes to its thread pool)."""
    with mock.patch.object(worker, "enqueue_req") as enqueue:
        worker.accept(listener)
    return enqueue.called


def test_a_worker_holding_more_than_a_sibling_leaves_the_connection_to_it(listener, workers):
    busy, idle = workers(holding=8), workers(holding=2)
    with socket.create_connection(listener.getsockname()):
        assert not accepted(busy, listener)
        assert not any(key.fileobj is listener for key in busy.poller.get_map().values())
        assert accepted(idle, listener)


def test_the_connection_is_taken_after_the_wait_when_no_sibling_took_it(listener, workers):
    busy, _stuck = workers(holding=8), workers(holding=2)  # the sibling never accepts
    with socket.create_connection(listener.getsockname()):
        assert not accepted(busy, listener)
        with mock.patch.object(busy, "enqueue_req") as enqueue:
            for _ in range(10):  # the wait's end arrives through the worker's own loop
                for key, _ in busy.poller.select(timeout=1):
                    key.data(key.fileobj)
                if enqueue.called:
                    break
        assert enqueue.called and busy.nr_conns == 9
        # and it listens again
        busy.set_accept_enabled(True)
        assert any(key.fileobj is listener for key in busy.poller.get_map().values())


def test_a_worker_holding_no_more_than_its_siblings_accepts_at_once(listener, workers):
    first, _second = workers(holding=3), workers(holding=3)
    with socket.create_connection(listener.getsockname()):
        assert accepted(first, listener)


def test_a_dead_siblings_slot_does_not_hold_a_worker_back(listener, workers):
    busy, gone = workers(holding=8), workers(holding=0)
    gunicorn_worker._PIDS[gone._slot] = 2 ** 31 - 2  # no such process
    with socket.create_connection(listener.getsockname()):
        assert accepted(busy, listener)
