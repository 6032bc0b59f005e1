"""Fixtures of the Handinger SDK proof: a taskyard server and the official
`handinger` client, in strict response validation mode, so that any key,
type or enum of an answer the SDK's models reject fails the test.

The server's config makes the `high` budget's processor (`pro`) slow, so
that a turn can be caught while it is still running; every wait polls with
a deadline."""

from __future__ import annotations

import pathlib
import sys

import pytest
from handinger import Handinger

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "support"))
# `wait_until` is the suite's, shared from there.
from taskyard_server import WAIT_S, Server, wait_until, with_config  # noqa: E402, F401

CONFIG = """
# A refused webhook delivery is tried again soon (the hosted wait is 5 s).
webhook_retry_base_ms = 100

[processors.pro]
kind = "mock"
latency_ms = 4000
"""


@pytest.fixture(scope="session")
def server():
    srv = with_config(CONFIG, "--api-key", "hd-test-key", "--test-clock")
    yield srv
    srv.stop_cleanly()


@pytest.fixture(scope="session")
def client(server: Server) -> Handinger:
    return Handinger(api_key="hd-test-key", base_url=server.base_url, _strict_response_validation=True)


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
