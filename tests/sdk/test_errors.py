"""The SDK's exceptions for every status of the spec's section 1.6 table
that a client can provoke: 400, 401, 403, 404, 405, 408, 409, 413, 422.

Each error body is checked against the hosted ErrorResponse shape."""

from __future__ import annotations

import time

import pytest
import parallel
from parallel import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    Parallel,
    PermissionDeniedError,
    UnprocessableEntityError,
)
from parallel.types import TaskRun

from conftest import JSON_SPEC, Server, check_api_error, check_result, check_run, request_count, wait_for_status, wait_until

RESULT_ROUTE = "/v1/tasks/runs/{run_id}/result"
CANCEL_ROUTE = "/v1/tasks/runs/{run_id}/cancel"

MISSING_RUN = "trun_" + "0" * 32
MISSING_GROUP = "tgrp_" + "0" * 32


def exact(caught, cls):
    """The SDK raised exactly this class (not a subclass of it)."""
    assert type(caught.value) is cls, f"expected {cls.__name__}, got {type(caught.value).__name__}"
    return caught.value


# ---------------------------------------------------------------------------
# 400


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c, g: list(c.task_group.events(g, last_event_id="not-a-cursor")), id="events-cursor"),
        pytest.param(lambda c, g: list(c.task_group.events(g, last_event_id="-1")), id="events-negative-cursor"),
        pytest.param(lambda c, g: list(c.task_group.events(g, api_timeout=-1)), id="events-negative-timeout"),
        pytest.param(lambda c, g: list(c.task_group.get_runs(g, status="done")), id="runs-status"),
        pytest.param(lambda c, g: list(c.task_group.get_runs(g, last_event_id="1.5")), id="runs-cursor"),
        pytest.param(
            lambda c, g: list(c.task_group.get_runs(g, last_event_id="9223372036854775808")), id="runs-cursor-overflow"
        ),
        pytest.param(
            lambda c, g: c.task_group.add_runs(
                g, inputs=[{"input": "x", "processor": "lite"}], extra_query={"refresh_status": "maybe"}
            ),
            id="add-runs-refresh-status",
        ),
        pytest.param(
            lambda c, g: c.post("/v1/tasks/runs", cast_to=TaskRun, content=b"", options={"headers": {"content-type": "application/json"}}),
            id="create-empty-body",
        ),
        pytest.param(
            lambda c, g: c.post(
                "/v1/tasks/runs", cast_to=TaskRun, content=b"{not json", options={"headers": {"content-type": "application/json"}}
            ),
            id="create-not-json",
        ),
        pytest.param(
            lambda c, g: c.post("/v1/tasks/runs", cast_to=TaskRun, body={"input": _deep(200), "processor": "lite"}),
            id="json-too-deep",
        ),
    ],
)
def test_400_bad_request(client: Parallel, call):
    group = client.task_group.create()
    with pytest.raises(BadRequestError) as caught:
        call(client, group.task_group_id)
    error = check_api_error(exact(caught, BadRequestError), 400)
    assert error["detail"]["errors"][0]["loc"][0] in ("query", "body", "header")


def _deep(depth: int):
    value: object = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_400_result_negative_timeout(client: Parallel):
    run = client.task_run.create(input="x", processor="lite")
    with pytest.raises(BadRequestError) as caught:
        client.task_run.result(run.run_id, api_timeout=-1)
    error = check_api_error(caught.value, 400)
    assert error["detail"]["errors"][0]["loc"] == ["query", "timeout"]


# ---------------------------------------------------------------------------
# 401


@pytest.fixture(scope="module")
def keyed_server():
    srv = Server("--api-key", "first-key", "--api-key", "second-key")
    yield srv
    code = srv.stop()
    log = srv.stderr()
    srv.cleanup()
    assert code == 0, log


@pytest.mark.parametrize("key", ["wrong-key", "first-ke", "first-key2", ""])
def test_401_wrong_or_missing_key(keyed_server: Server, key: str):
    if key == "":
        # The SDK insists on a key; send none by overriding the header.
        client = Parallel(api_key="unused", base_url=keyed_server.base_url, default_headers={"x-api-key": parallel.Omit()})
    else:
        client = Parallel(api_key=key, base_url=keyed_server.base_url)
    for call in (
        lambda: client.task_run.create(input="x", processor="lite"),
        lambda: client.task_group.retrieve(MISSING_GROUP),
        lambda: client.task_run.retrieve(MISSING_RUN),  # 401 comes before 404
        lambda: list(client.task_group.events(MISSING_GROUP)),
        lambda: client.get("/v1/monitors", cast_to=object),  # 401 comes before 404 on /v1 paths
    ):
        with pytest.raises(AuthenticationError) as caught:
            call()
        error = check_api_error(exact(caught, AuthenticationError), 401)
        assert error["message"] == "Unauthorized: invalid or missing credentials"


def test_401_not_for_the_right_keys(keyed_server: Server):
    for key in ("first-key", "second-key"):
        client = Parallel(api_key=key, base_url=keyed_server.base_url)
        run = client.task_run.create(input="x", processor="lite")
        check_run(run)
        assert client.task_run.result(run.run_id).run.status == "completed"
    # /healthz never needs a key.
    anonymous = Parallel(api_key="wrong-key", base_url=keyed_server.base_url)
    health = anonymous.get("/healthz", cast_to=object)
    assert health["status"] == "ok" and health["version"] == keyed_server.version


# ---------------------------------------------------------------------------
# 403


def test_403_unknown_processor_on_create(client: Parallel):
    with pytest.raises(PermissionDeniedError) as caught:
        client.task_run.create(input="x", processor="cor")
    error = check_api_error(exact(caught, PermissionDeniedError), 403)
    assert error["detail"]["errors"] == [
        {"loc": ["body", "processor"], "msg": "unknown processor 'cor'", "type": "unknown_processor"}
    ]
    assert error["message"] == "body.processor: unknown processor 'cor'"


def test_403_unknown_processor_in_add_runs_names_the_index(client: Parallel):
    group = client.task_group.create()
    inputs = [{"input": f"q{i}", "processor": "lite"} for i in range(5)]
    inputs[3]["processor"] = "Core"  # names are case-sensitive
    with pytest.raises(PermissionDeniedError) as caught:
        client.task_group.add_runs(group.task_group_id, inputs=inputs)
    error = check_api_error(exact(caught, PermissionDeniedError), 403)
    assert [e["loc"] for e in error["detail"]["errors"]] == [["body", "inputs", 3, "processor"]]
    assert error["detail"]["errors"][0]["type"] == "unknown_processor"
    # All or nothing: no run was added.
    assert client.task_group.retrieve(group.task_group_id).status.num_task_runs == 0


def test_unknown_processor_and_other_problems_is_422(client: Parallel):
    with pytest.raises(UnprocessableEntityError) as caught:
        client.task_run.create(input="x", processor="cor", metadata={"this_key_is_way_too_long": "v"})
    error = check_api_error(caught.value, 422)
    types = sorted(e["type"] for e in error["detail"]["errors"])
    assert "unknown_processor" in types and len(types) == 2


# ---------------------------------------------------------------------------
# 404


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.task_run.retrieve(MISSING_RUN), id="retrieve"),
        pytest.param(lambda c: c.task_run.retrieve("trun_123"), id="retrieve-bad-shape"),
        pytest.param(lambda c: c.task_run.retrieve_input(MISSING_RUN), id="retrieve-input"),
        pytest.param(lambda c: c.task_run.result(MISSING_RUN, api_timeout=1), id="result"),
        pytest.param(lambda c: list(c.task_run.events(MISSING_RUN)), id="run-events"),
        pytest.param(lambda c: c.task_group.retrieve(MISSING_GROUP), id="group"),
        pytest.param(lambda c: c.task_group.retrieve(MISSING_RUN), id="group-with-run-id"),
        pytest.param(
            lambda c: c.task_group.add_runs(MISSING_GROUP, inputs=[{"input": "x", "processor": "lite"}]), id="add-runs"
        ),
        pytest.param(lambda c: list(c.task_group.events(MISSING_GROUP)), id="group-events"),
        pytest.param(lambda c: list(c.task_group.get_runs(MISSING_GROUP)), id="group-runs"),
        pytest.param(lambda c: c.task_group.retrieve_run(MISSING_RUN, task_group_id=MISSING_GROUP), id="group-run"),
        pytest.param(lambda c: c.get("/v1/monitors", cast_to=object), id="out-of-scope-path"),
    ],
)
def test_404_not_found(client: Parallel, call):
    with pytest.raises(NotFoundError) as caught:
        call(client)
    check_api_error(exact(caught, NotFoundError), 404)


def test_404_result_of_a_cancelled_run(client: Parallel):
    run = client.task_run.create(input="x", processor="core", metadata={"mock_delay_ms": 10000})
    cancelled = client.post(f"/v1/tasks/runs/{run.run_id}/cancel", cast_to=TaskRun)
    assert check_run(cancelled)["status"] in ("cancelling", "cancelled")
    wait_for_status(client, run.run_id, "cancelled")
    with pytest.raises(NotFoundError) as caught:
        client.task_run.result(run.run_id)
    error = check_api_error(caught.value, 404)
    assert error["message"] == f"run {run.run_id} was cancelled"
    assert error["detail"] == {"run_id": run.run_id, "status": "cancelled"}


# ---------------------------------------------------------------------------
# 405


def test_405_wrong_method(fast_client: Parallel):
    with pytest.raises(APIStatusError) as caught:
        fast_client.delete(f"/v1/tasks/runs/{MISSING_RUN}", cast_to=object)
    check_api_error(exact(caught, APIStatusError), 405)
    assert caught.value.response.headers["allow"] == "GET"


# ---------------------------------------------------------------------------
# 408


def test_408_result_of_a_run_still_active(fast_client: Parallel):
    run = fast_client.task_run.create(input="slow", processor="core", metadata={"mock_delay_ms": 20000})
    started = time.monotonic()
    with pytest.raises(APIStatusError) as caught:
        fast_client.task_run.result(run.run_id, api_timeout=1)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5, elapsed
    error = check_api_error(exact(caught, APIStatusError), 408)
    assert error["message"] == "Request timed out; run still active"
    assert error["detail"]["run_id"] == run.run_id
    assert error["detail"]["status"] in ("queued", "running")
    assert "x-should-retry" not in caught.value.response.headers
    # api_timeout=0 answers at once.
    started = time.monotonic()
    with pytest.raises(APIStatusError) as caught:
        fast_client.task_run.result(run.run_id, api_timeout=0)
    assert caught.value.status_code == 408 and time.monotonic() - started < 1
    fast_client.post(f"/v1/tasks/runs/{run.run_id}/cancel", cast_to=TaskRun)
    wait_for_status(fast_client, run.run_id, "cancelled")


def test_408_is_retried_by_the_default_client(client: Parallel, server: Server):
    # Spec 1.7: no x-should-retry on the 408 of /result, so the default
    # client (max_retries 2) makes 3 requests, then raises APIStatusError.
    run = client.task_run.create(input="slow", processor="core", metadata={"mock_delay_ms": 20000})
    before = request_count(server, "GET", RESULT_ROUTE, 408)
    started = time.monotonic()
    with pytest.raises(APIStatusError) as caught:
        client.task_run.result(run.run_id, api_timeout=1)
    elapsed = time.monotonic() - started
    assert exact(caught, APIStatusError).status_code == 408
    assert request_count(server, "GET", RESULT_ROUTE, 408) - before == 3
    assert 3 <= elapsed < 10, elapsed
    client.post(f"/v1/tasks/runs/{run.run_id}/cancel", cast_to=TaskRun)
    wait_for_status(client, run.run_id, "cancelled")


# ---------------------------------------------------------------------------
# 409


def test_409_cancel_a_completed_run(client: Parallel, server: Server):
    run = client.task_run.create(input="done", processor="lite")
    client.task_run.result(run.run_id)
    before = request_count(server, "POST", CANCEL_ROUTE, 409)
    with pytest.raises(ConflictError) as caught:
        client.post(f"/v1/tasks/runs/{run.run_id}/cancel", cast_to=TaskRun)
    # x-should-retry: false, so the default client (2 retries) did not retry.
    assert request_count(server, "POST", CANCEL_ROUTE, 409) - before == 1
    error = check_api_error(exact(caught, ConflictError), 409)
    assert caught.value.response.headers.get("x-should-retry") == "false"
    assert error["detail"] == {"run_id": run.run_id, "status": "completed"}
    # Nothing changed.
    assert client.task_run.retrieve(run.run_id).status == "completed"


def test_409_cancel_a_failed_run(client: Parallel):
    run = client.task_run.create(input="x", processor="lite", metadata={"mock_fail": "no"})
    wait_for_status(client, run.run_id, "failed")
    with pytest.raises(ConflictError) as caught:
        client.post(f"/v1/tasks/runs/{run.run_id}/cancel", cast_to=TaskRun)
    assert check_api_error(caught.value, 409)["detail"] == {"run_id": run.run_id, "status": "failed"}


def test_cancel_queued_and_cancelled_runs_is_200(client: Parallel):
    run = client.task_run.create(input="x", processor="core", metadata={"mock_delay_ms": 10000})
    first = client.post(f"/v1/tasks/runs/{run.run_id}/cancel", cast_to=TaskRun)
    assert first.status in ("cancelled", "cancelling")
    wait_for_status(client, run.run_id, "cancelled")
    again = client.post(f"/v1/tasks/runs/{run.run_id}/cancel", cast_to=TaskRun)
    assert check_run(again)["status"] == "cancelled"


# ---------------------------------------------------------------------------
# 413


def test_413_body_over_32_mib(fast_client: Parallel):
    big = "x" * (33 * 1024 * 1024)
    with pytest.raises(APIStatusError) as caught:
        fast_client.task_run.create(input=big, processor="lite")
    error = check_api_error(exact(caught, APIStatusError), 413)
    item = error["detail"]["errors"][0]
    assert item["type"] == "limit_exceeded" and item["limit"] == "BODY_BYTES_MAX"
    assert item["max"] == 32 * 1024 * 1024 and item["got"] > item["max"]


def body_of_size(size: int) -> bytes:
    """A create-run body of exactly `size` bytes."""
    import json

    empty = json.dumps({"input": "", "processor": "lite", "task_spec": {"output_schema": "short"}}, separators=(",", ":"))
    body = json.dumps(
        {"input": "y" * (size - len(empty)), "processor": "lite", "task_spec": {"output_schema": "short"}},
        separators=(",", ":"),
    ).encode()
    assert len(body) == size
    return body


def test_body_limit_boundary(fast_client: Parallel):
    limit = 32 * 1024 * 1024
    headers = {"content-type": "application/json"}
    run = fast_client.post("/v1/tasks/runs", cast_to=TaskRun, content=body_of_size(limit), options={"headers": headers})
    assert check_run(run)["status"] == "queued"
    check_result(fast_client.task_run.result(run.run_id, api_timeout=30), "short")
    with pytest.raises(APIStatusError) as caught:
        fast_client.post("/v1/tasks/runs", cast_to=TaskRun, content=body_of_size(limit + 1), options={"headers": headers})
    item = check_api_error(exact(caught, APIStatusError), 413)["detail"]["errors"][0]
    assert item["got"] == limit + 1 and item["max"] == limit


# ---------------------------------------------------------------------------
# 422


@pytest.mark.parametrize(
    "kwargs, loc, kind",
    [
        ({"metadata": {"a_key_over_16_chars": "v"}}, ["body", "metadata", "a_key_over_16_chars"], None),
        ({"metadata": {"k": "v" * 513}}, ["body", "metadata", "k"], "limit_exceeded"),
        ({"metadata": {"mock_delay": 5}}, ["body", "metadata", "mock_delay"], None),
        ({"metadata": {"mock_delay_ms": -1}}, ["body", "metadata", "mock_delay_ms"], None),
        ({"metadata": {"mock_fail_times": "x"}}, ["body", "metadata", "mock_fail_times"], None),
        ({"task_spec": {"output_schema": {"type": "xml"}}}, ["body", "task_spec", "output_schema"], None),
        (
            {"task_spec": {"output_schema": {"type": "json", "json_schema": {"type": "array"}}}},
            ["body", "task_spec", "output_schema"],
            None,
        ),
        (
            {"task_spec": {"output_schema": "x", "input_schema": {"type": "auto"}}},
            ["body", "task_spec", "input_schema"],
            None,
        ),
        ({"source_policy": {"include_domains": [f"d{i}.com" for i in range(201)]}}, ["body", "source_policy"], None),
    ],
    ids=[
        "metadata-key",
        "metadata-value",
        "mock-typo",
        "mock-delay-negative",
        "mock-fail-times",
        "schema-type",
        "json-schema-array",
        "auto-input",
        "source-policy",
    ],
)
def test_422_invalid_create(client: Parallel, kwargs, loc, kind):
    with pytest.raises(UnprocessableEntityError) as caught:
        client.task_run.create(input="x", processor="lite", **kwargs)
    error = check_api_error(exact(caught, UnprocessableEntityError), 422)
    first = error["detail"]["errors"][0]
    assert first["loc"][: len(loc)] == loc, first
    if kind:
        assert first["type"] == kind
    assert error["message"].startswith(".".join(str(part) for part in first["loc"]))


def test_422_previous_interaction_id_of_no_run(client: Parallel):
    """A follow-up must name a run that exists (spec 2.2): the SDK raises its
    422 class, and its message names the field."""
    with pytest.raises(UnprocessableEntityError) as caught:
        client.task_run.create(input="x", processor="lite", previous_interaction_id=MISSING_RUN)
    error = check_api_error(exact(caught, UnprocessableEntityError), 422)
    first = error["detail"]["errors"][0]
    assert first["loc"] == ["body", "previous_interaction_id"], first
    assert "previous_interaction_id" in str(caught.value)


def test_422_missing_fields(client: Parallel):
    with pytest.raises(UnprocessableEntityError) as caught:
        client.post("/v1/tasks/runs", cast_to=TaskRun, body={"metadata": {"a": 1}})
    error = check_api_error(caught.value, 422)
    locs = sorted(tuple(e["loc"]) for e in error["detail"]["errors"])
    assert locs == [("body", "input"), ("body", "processor")]
    assert all(e["type"] == "missing" for e in error["detail"]["errors"])
    assert "(and 1 more)" in error["message"]


@pytest.mark.parametrize("count", [0, 1001])
def test_422_add_runs_count(client: Parallel, count: int):
    group = client.task_group.create()
    with pytest.raises(UnprocessableEntityError) as caught:
        client.task_group.add_runs(group.task_group_id, inputs=[{"input": "x", "processor": "lite"}] * count)
    error = check_api_error(caught.value, 422)
    item = error["detail"]["errors"][0]
    assert item["type"] == "limit_exceeded" and item["limit"] == "RUNS_PER_REQUEST_MAX"
    assert item["max"] == 1000 and item["got"] == count
    assert client.task_group.retrieve(group.task_group_id).status.num_task_runs == 0


def test_422_add_runs_names_every_bad_input(client: Parallel):
    group = client.task_group.create()
    inputs = [{"input": f"q{i}", "processor": "lite"} for i in range(20)]
    inputs[2]["metadata"] = {"mock_fail_times": -3}
    inputs[17]["metadata"] = {"toolongkey_abcdefgh": 1}
    with pytest.raises(UnprocessableEntityError) as caught:
        client.task_group.add_runs(group.task_group_id, inputs=inputs)
    error = check_api_error(caught.value, 422)
    indices = sorted({e["loc"][2] for e in error["detail"]["errors"]})
    assert indices == [2, 17]
    assert all(e["loc"][:2] == ["body", "inputs"] for e in error["detail"]["errors"])
    assert client.task_group.retrieve(group.task_group_id).status.num_task_runs == 0


def test_422_lists_shape_and_semantic_problems_together(client: Parallel):
    # Spec 1.6 / 4.5: a 422 lists all problems and names each bad input.
    # Input 0 has a semantic problem (a bad reserved metadata value), input
    # 1 a shape problem (json_schema not an object).
    group = client.task_group.create()
    inputs = [
        {"input": "a", "processor": "lite", "metadata": {"mock_fail_times": -3}},
        {"input": "b", "processor": "lite", "task_spec": {"output_schema": {"type": "json", "json_schema": "nope"}}},
    ]
    with pytest.raises(UnprocessableEntityError) as caught:
        client.task_group.add_runs(group.task_group_id, inputs=inputs)
    error = check_api_error(caught.value, 422)
    indices = sorted({e["loc"][2] for e in error["detail"]["errors"]})
    assert indices == [0, 1], error["detail"]["errors"]


def test_422_group_metadata(client: Parallel):
    with pytest.raises(UnprocessableEntityError) as caught:
        client.task_group.create(metadata={"k": {"nested": True}})
    check_api_error(caught.value, 422)
