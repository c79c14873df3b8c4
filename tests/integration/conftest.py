"""Integration tests: the machine's real Postgres and Redis, and a real Celery worker process.

Run with DATABASE_URL (Postgres) and REDIS_URL set, e.g. via `make test-integration`."""

import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from molesite.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
# The test worker's own name: remote-control calls name it (destination=[WORKER_NAME]), so that no
# other worker on the broker (one a killed run left, say) answers or is told for it.
WORKER_NAME = f"itest-{os.getpid()}@{socket.gethostname()}"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def real_services():
    engine = django_settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine or not django_settings.REDIS_URL:
        pytest.fail(
            "Integration tests need the real services: set DATABASE_URL=postgres://… and REDIS_URL=redis://… "
            "(`make test-integration` does)."
        )


@pytest.fixture(scope="module")
def shared_media(tmp_path_factory):
    return tmp_path_factory.mktemp("shared-media")


@pytest.fixture
def worker_media(settings, private_media, shared_media):
    """The web side (this process) and the worker must see the same private storage."""
    settings.MEDIA_ROOT = shared_media
    return shared_media


def run_held_in_another_thread(work):
    """Run work(hold) in a thread, as another request with its own database connection. work
    calls hold() at the moment the test should act (between its check and its commit, say);
    this returns the thread once it is there, and hold() returns half a second later."""
    holding, release = threading.Event(), threading.Event()

    def hold():
        holding.set()
        release.wait(10)

    def run():
        try:
            work(hold)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    assert holding.wait(10)
    threading.Timer(0.5, release.set).start()
    return thread


def dies_with_this_process():
    """A preexec_fn: on Linux the child is sent SIGTERM when this process ends, killed included
    (prctl PR_SET_PDEATHSIG, kept across exec), so that no worker outlives a killed test run.
    The signal comes when the thread that started the child ends: call it from pytest's main
    thread, as fixtures run."""
    if sys.platform != "linux":
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def preexec():
        if prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
            os._exit(126)
        if os.getppid() != parent:  # this process ended before the child asked
            os._exit(126)

    return preexec


def wait_for_worker(process, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Celery worker exited with code {process.returncode}")
        if celery_app.control.ping(destination=[WORKER_NAME], timeout=1.0):
            return
    raise TimeoutError("the Celery worker did not answer a ping in time")


@pytest.fixture
def celery_worker_process(transactional_db, worker_media, tiny_model, tmp_path):
    """A real `celery worker` process on the test database, the shared media and the tiny model."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "MEDIA_ROOT": str(worker_media),
        "ML_MODEL_DIR": str(tiny_model),
        "DEBUG": "false",
        "SECRET_KEY": django_settings.SECRET_KEY,
        "PYTHONUNBUFFERED": "1",
    }
    celery_app.control.purge()
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            # both queues, as `make run`'s worker: the photos' and the e-mails' (settings.MAIL_TASKS)
            [sys.executable, "-m", "celery", "-A", "molesite", "worker", "-Q", "celery,mail", "--loglevel=INFO",
             "--concurrency=1", "--without-gossip", "--without-mingle", "--hostname", WORKER_NAME],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            # its own process group, so that the pool processes are stopped with it (killpg)
            start_new_session=True, preexec_fn=dies_with_this_process(),
        )
    try:
        wait_for_worker(process)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        sys.stdout.write(log_path.read_text(errors="replace")[-3000:])
