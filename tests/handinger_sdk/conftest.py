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
from taskyard_server import Server, wait_until, with_config  # noqa: E402, F401

CONFIG = """
[processors.pro]
kind = "mock"
latency_ms = 4000
"""


@pytest.fixture(scope="session")
def server():
    srv = with_config(CONFIG, "--api-key", "hd-test-key")
    yield srv
    srv.stop_cleanly()


@pytest.fixture(scope="session")
def client(server: Server) -> Handinger:
    return Handinger(api_key="hd-test-key", base_url=server.base_url, _strict_response_validation=True)


