"""Fixtures of the Nextcloud face's proof: a taskyard server and the
nc-py-api client pointed at it, as a user points it at a Nextcloud.

nc-py-api 0.30.3 has no user-side TaskProcessing helper: a user calls its
generic `ocs()` (spec 5.1), which is what these tests do. The server's
config serves translate (enum slots), makes summary slow so that a task
can be cancelled while it runs, and needs an API key as the password.
Every wait polls with a deadline."""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time
import warnings
from typing import Callable, TypeVar

import pytest
from nc_py_api import Nextcloud

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "support"))
from taskyard_server import Server  # noqa: E402

#: Every wait of the suite ends by this deadline at the latest.
WAIT_S = 20.0

#: The taskyard API key: the password (an app password, to Nextcloud).
API_KEY = "nc-test-key"

BASE = "/ocs/v2.php/taskprocessing"
BASE_V1 = "/ocs/v1.php/taskprocessing"

T = TypeVar("T")

CONFIG = """
[processors.slow]
kind = "mock"
latency_ms = 600000

[faces.nextcloud]
languages = [{ value = "en", name = "English" }, { value = "de", name = "German" }]

[faces.nextcloud.task_types]
"core:text2text" = "mock"
"core:text2text:summary" = "slow"
"core:text2text:translate" = "mock"
"""


@pytest.fixture(scope="session")
def server():
    config = os.path.join(tempfile.mkdtemp(prefix="taskyard-nextcloud-"), "taskyard.toml")
    with open(config, "w") as handle:
        handle.write(CONFIG)
    srv = Server("--config", config, "--api-key", API_KEY)
    yield srv
    code = srv.stop()
    log = srv.stderr()
    srv.cleanup()
    assert code == 0, f"taskyard did not exit cleanly (exit {code}); stderr:\n{log}"
    assert "panicked" not in log, f"taskyard panicked:\n{log}"


def connect(server: Server, user: str, password: str = API_KEY) -> Nextcloud:
    """A client as a user makes one; the sync class warns it goes away in
    0.31, which is not this suite's concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Nextcloud(nextcloud_url=server.base_url, nc_auth_user=user, nc_auth_pass=password)


@pytest.fixture()
def connect_as(server: Server) -> Callable[..., Nextcloud]:
    return lambda user, password=API_KEY: connect(server, user, password)


def wait_until(what: str, check: Callable[[], T]) -> T:
    """Polls `check` until it answers something truthy, at most WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    pause = 0.01
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def wait_status(nc: Nextcloud, task_id: int, status: str) -> dict:
    """Polls `GET /task/{id}` as a client does until the task has `status`."""
    return wait_until(
        f"task {task_id} to be {status}",
        lambda: (lambda t: t if t["status"] == status else None)(nc.ocs("GET", f"{BASE}/task/{task_id}")["task"]),
    )
