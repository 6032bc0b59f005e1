"""Rate limits (issue 14): the SDK's own back-off against taskyard's 429.

A server whose write routes allow 2 requests per second with a burst of 1:
the SDK (2 retries by default) gets each create through by waiting out the
`retry-after-ms` it is sent; without retries it raises RateLimitError."""

from __future__ import annotations

import os
import tempfile

import pytest
from parallel import Parallel, RateLimitError

from conftest import Server, check_api_error, request_count


@pytest.fixture(scope="module")
def limited():
    config = os.path.join(tempfile.mkdtemp(prefix="taskyard-rate-"), "rate.toml")
    with open(config, "w") as handle:
        handle.write("[rate_limits]\nwrite = { per_second = 2, burst = 1 }\n")
    srv = Server("--config", config)
    yield srv
    srv.stop()
    srv.cleanup()


def test_the_sdk_backs_off_and_gets_through(limited: Server):
    client = Parallel(api_key="test", base_url=limited.base_url)
    before = request_count(limited, "POST", "/v1/tasks/runs", 429)
    runs = [client.task_run.create(input=f"row {i}", processor="lite") for i in range(4)]
    assert len({run.run_id for run in runs}) == 4
    refused = request_count(limited, "POST", "/v1/tasks/runs", 429) - before
    assert refused >= 1, "the server refused some creates and the SDK retried them"


def test_without_retries_the_sdk_raises_rate_limit_error(limited: Server):
    client = Parallel(api_key="test", base_url=limited.base_url, max_retries=0)
    with pytest.raises(RateLimitError) as caught:
        for i in range(5):
            client.task_run.create(input=f"burst {i}", processor="lite")
    error = check_api_error(caught.value, 429)
    assert "rate_limits.write" in error["message"]
    assert caught.value.response.headers["retry-after-ms"]
