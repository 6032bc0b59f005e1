"""Fixtures of the Nextcloud face's proof: a taskyard server and the
nc-py-api client pointed at it, as a user points it at a Nextcloud.

nc-py-api 0.30.3 has no user-side TaskProcessing helper: a user calls its
generic `ocs()` (spec 5.1), which is what these tests do. The server's
config serves translate (enum slots), makes summary slow so that a task
can be cancelled while it runs, and needs an API key as the password.
Every wait polls with a deadline."""

from __future__ import annotations

import pathlib
import sys
import warnings
from typing import Callable

import pytest
from nc_py_api import Nextcloud

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "support"))
from taskyard_server import Server, wait_until, with_config  # noqa: E402

#: The taskyard API key: the password (an app password, to Nextcloud).
API_KEY = "nc-test-key"

BASE = "/ocs/v2.php/taskprocessing"
BASE_V1 = "/ocs/v1.php/taskprocessing"

CONFIG = """
[processors.slow]
kind = "mock"
latency_ms = 600000

[nextcloud]
languages = [{ value = "en", name = "English" }, { value = "de", name = "German" }]

[nextcloud.task_types]
"core:text2text" = "mock"
"core:text2text:summary" = "slow"
"core:text2text:translate" = "mock"
"""


@pytest.fixture(scope="session")
def server():
    srv = with_config(CONFIG, "--api-key", API_KEY)
    yield srv
    srv.stop_cleanly()


def connect(server: Server, user: str, password: str = API_KEY) -> Nextcloud:
    """A client as a user makes one; the sync class warns it goes away in
    0.31, which is not this suite's concern."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Nextcloud(nextcloud_url=server.base_url, nc_auth_user=user, nc_auth_pass=password)


@pytest.fixture()
def connect_as(server: Server) -> Callable[..., Nextcloud]:
    return lambda user, password=API_KEY: connect(server, user, password)


def wait_status(nc: Nextcloud, task_id: int, status: str) -> dict:
    """Polls `GET /task/{id}` as a client does until the task has `status`."""
    return wait_until(
        f"task {task_id} to be {status}",
        lambda: (lambda t: t if t["status"] == status else None)(nc.ocs("GET", f"{BASE}/task/{task_id}")["task"]),
    )
