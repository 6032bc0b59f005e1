"""Fixtures of the Handinger SDK proof: a taskyard server and the official
`handinger` client, in strict response validation mode, so that any key,
type or enum of an answer the SDK's models reject fails the test.

The server's config makes the `high` budget's processor (`pro`) slow, so
that a turn can be caught while it is still running; every wait polls with
a deadline."""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time
from typing import Callable, TypeVar

import pytest
from handinger import Handinger

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "support"))
from taskyard_server import Server  # noqa: E402

#: Every wait of the suite ends by this deadline at the latest.
WAIT_S = 20.0

T = TypeVar("T")

CONFIG = """
# A refused webhook delivery is tried again soon (the hosted wait is 5 s).
webhook_retry_base_ms = 100

[processors.pro]
kind = "mock"
latency_ms = 4000
"""


@pytest.fixture(scope="session")
def server():
    config = os.path.join(tempfile.mkdtemp(prefix="taskyard-handinger-"), "taskyard.toml")
    with open(config, "w") as handle:
        handle.write(CONFIG)
    srv = Server("--config", config, "--api-key", "hd-test-key", "--test-clock")
    yield srv
    code = srv.stop()
    log = srv.stderr()
    srv.cleanup()
    assert code == 0, f"taskyard did not exit cleanly (exit {code}); stderr:\n{log}"
    assert "panicked" not in log, f"taskyard panicked:\n{log}"


@pytest.fixture(scope="session")
def client(server: Server) -> Handinger:
    return Handinger(api_key="hd-test-key", base_url=server.base_url, _strict_response_validation=True)


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


def clock(server: Server, advance_s: float | None = None) -> str:
    """The server's test clock (`--test-clock`), moved on by `advance_s`
    seconds first when given: the time schedules fire by, RFC 3339."""
    import json
    import urllib.request

    request = urllib.request.Request(
        server.base_url + "/taskyard/clock",
        method="GET" if advance_s is None else "POST",
        data=None if advance_s is None else json.dumps({"advance_s": advance_s}).encode(),
        # Server routes take the key as the first face (Parallel) does.
        headers={"x-api-key": "hd-test-key", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=WAIT_S) as answer:
        return json.loads(answer.read())["now"]
