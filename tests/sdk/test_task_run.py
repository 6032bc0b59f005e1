"""`client.task_run`: create, retrieve, retrieve_input, events, result, execute.

Each test uses the official SDK as a user would and checks every object
against the spec's wire shape and every output against its task's schema.
"""

from __future__ import annotations

import datetime
import time
from enum import Enum
from typing import List, Optional

import pydantic
import pytest
from parallel import NotFoundError, Parallel
from parallel.types import ParsedTaskRunResult, TaskRun, TaskRunResult

from conftest import (
    JSON_SPEC,
    check_event,
    check_output,
    check_result,
    check_run,
    check_wire,
    RUN_INPUT,
    wait_for_status,
    wait_until,
)


def test_create_text_input_without_task_spec_is_auto(client: Parallel):
    run = client.task_run.create(input="What does Parallel Web Systems do?", processor="core")
    data = check_run(run)
    assert data["status"] == "queued" and data["is_active"] is True
    assert data["taskgroup_id"] is None and data["metadata"] is None and data["warnings"] is None
    assert data["interaction_id"] == data["run_id"]
    assert data["processor"] == "core"
    assert data["created_at"] == data["modified_at"]

    result = client.task_run.result(run.run_id, api_timeout=20)
    assert isinstance(result, TaskRunResult)
    out = check_result(result, None)  # auto: content validates against output.output_schema
    assert out["run"]["run_id"] == run.run_id
    assert out["run"]["modified_at"] >= out["run"]["created_at"]


def test_create_raw_status_is_202(client: Parallel):
    # betas become a parallel-beta header, which is accepted and ignored.
    raw = client.task_run.with_raw_response.create(
        input="status code", processor="lite", betas=["mcp-server-2025-07-17", "events-sse-2025-07-24"]
    )
    assert raw.status_code == 202
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.headers["content-length"] == str(len(raw.http_response.content))
    check_run(raw.parse())


def test_create_json_input_with_json_output_schema(client: Parallel):
    company = {"name": "Parallel Web Systems", "website": "parallel.ai", "employees": 42, "tags": ["ai", "web"]}
    run = client.task_run.create(
        input=company,
        processor="base",
        task_spec={
            **JSON_SPEC,
            "input_schema": {
                "type": "json",
                "json_schema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "website": {"type": "string"}},
                    "required": ["name"],
                },
            },
        },
        metadata={"case": "json-io", "n": 7, "flag": True},
    )
    data = check_run(run)
    assert data["metadata"] == {"case": "json-io", "n": 7, "flag": True}

    result = client.task_run.result(run.run_id)
    check_result(result, JSON_SPEC["output_schema"])
    assert result.run.metadata == {"case": "json-io", "n": 7, "flag": True}

    stored = client.task_run.retrieve_input(run.run_id)
    sent = check_wire(stored, RUN_INPUT, "RunInput")
    assert sent["input"] == company
    assert sent["processor"] == "base"
    assert sent["task_spec"]["output_schema"] == JSON_SPEC["output_schema"]
    assert sent["task_spec"]["input_schema"]["json_schema"]["required"] == ["name"]


def test_metadata_numbers_are_echoed_as_given_on_the_wire(client: Parallel):
    # The SDK types metadata values as float, so read the raw JSON.
    run = client.task_run.create(input="numbers", processor="lite", metadata={"i": 7, "f": 2.5, "s": "x"})
    raw = client.task_run.with_raw_response.retrieve(run.run_id)
    assert raw.http_response.json()["metadata"] == {"i": 7, "f": 2.5, "s": "x"}
    assert '"i":7' in raw.http_response.text.replace(" ", "")


@pytest.mark.parametrize(
    "output_schema",
    [
        {"type": "text", "description": "Two sentences about the company."},
        {"type": "text"},
        "A one-paragraph summary",
    ],
    ids=["text-schema", "text-without-description", "bare-string"],
)
def test_text_output_schemas(client: Parallel, output_schema):
    run = client.task_run.create(
        input={"company": "Parallel"},
        processor="lite",
        task_spec={"output_schema": output_schema},
    )
    result = client.task_run.result(run.run_id)
    check_result(result, output_schema)
    assert result.output.type == "text"


def test_explicit_auto_output_schema(client: Parallel):
    run = client.task_run.create(
        input="Who founded Parallel Web Systems?",
        processor="core-fast",
        task_spec={"output_schema": {"type": "auto"}},
    )
    result = client.task_run.result(run.run_id)
    data = check_result(result, {"type": "auto"})
    assert data["output"]["output_schema"]["type"] == "object"


def test_retrieve_follows_the_lifecycle(client: Parallel):
    run = client.task_run.create(input="slow one", processor="core", metadata={"mock_delay_ms": 600})
    assert check_run(client.task_run.retrieve(run.run_id))["status"] in ("queued", "running")
    running = wait_for_status(client, run.run_id, "running")
    assert check_run(running)["is_active"] is True
    done = wait_for_status(client, run.run_id, "completed")
    data = check_run(done)
    assert data["is_active"] is False
    assert data["modified_at"] > data["created_at"]
    assert data["created_at"] == run.created_at
    assert data["metadata"] == {"mock_delay_ms": 600}


def test_retrieve_input_echoes_every_field(client: Parallel):
    # A follow-up must name a run that exists: this one.
    earlier = client.task_run.create(input="the first turn", processor="lite")
    sent = dict(
        input={"question": "What is the capital of France?", "lang": "en"},
        processor="ultra-fast",
        metadata={"owner": "sdk-suite", "priority": 2},
        enable_events=False,
        source_policy={"include_domains": ["wikipedia.org"], "exclude_domains": ["example.com"], "after_date": "2024-01-01"},
        advanced_settings={"location": "FR"},
        mcp_servers=[
            {
                "name": "tools",
                "url": "https://mcp.example.com/sse",
                "type": "url",
                "headers": {"Authorization": "Bearer secret"},
                "allowed_tools": ["search"],
            }
        ],
        memory_scope_key="scope-1",
        previous_interaction_id=earlier.interaction_id,
        task_spec={"output_schema": "The capital city", "input_schema": "A question"},
    )
    run = client.task_run.create(**sent)
    echoed = check_wire(client.task_run.retrieve_input(run.run_id), RUN_INPUT, "RunInput")
    for key, value in sent.items():
        if key == "mcp_servers":
            continue
        assert echoed[key] == value, f"{key}: sent {value!r}, got {echoed[key]!r}"
    server = echoed["mcp_servers"][0]
    assert server["name"] == "tools" and server["url"] == "https://mcp.example.com/sse"
    assert server["allowed_tools"] == ["search"]
    assert server.get("headers") is None, "MCP server headers are write-only"
    assert "webhook" not in echoed, "fields the request did not carry are omitted"
    check_result(client.task_run.result(run.run_id), "The capital city")


def test_events_of_a_run_without_events_enabled(client: Parallel):
    run = client.task_run.create(input="no events", processor="core", task_spec=JSON_SPEC)
    wait_for_status(client, run.run_id, "completed")
    events = list(client.task_run.events(run.run_id))
    for event in events:
        check_event(event)
    assert [e.type for e in events] == ["task_run.state", "task_run.state"]
    first, last = events
    assert first.event_id is None and last.event_id is None
    assert first.run.status == "completed" and first.output is None and first.input is None
    assert last.run.status == "completed"
    check_output(last.output, JSON_SPEC["output_schema"])


def test_events_of_a_premium_run_follow_it_live(client: Parallel):
    run = client.task_run.create(
        input="Follow me",
        processor="pro",
        metadata={"mock_delay_ms": 400},
        task_spec={"output_schema": {"type": "text", "description": "a short answer"}},
    )
    started = time.monotonic()
    events = list(client.task_run.events(run.run_id))
    assert time.monotonic() - started < 15
    for event in events:
        check_event(event)
    types = [e.type for e in events]
    assert types[0] == "task_run.state" and types[-1] == "task_run.state"
    assert events[0].run.status in ("queued", "running")
    assert events[-1].run.status == "completed"
    check_output(events[-1].output, {"type": "text"})
    middle = types[1:-1]
    assert "task_run.progress_msg.exec_status" in middle, types
    assert middle.count("task_run.progress_stats") == 1, types
    stats = [e for e in events if e.type == "task_run.progress_stats"][0]
    assert stats.progress_meter == 100

    # A second connection after the end replays the messages, oldest first,
    # with their original timestamps, and the latest stats only.
    replay = list(client.task_run.events(run.run_id))
    assert [e.type for e in replay] == types[:1] + middle + types[-1:]
    first_msgs = [(e.type, e.message, e.timestamp) for e in events if e.type.startswith("task_run.progress_msg")]
    again = [(e.type, e.message, e.timestamp) for e in replay if e.type.startswith("task_run.progress_msg")]
    assert again == first_msgs
    assert replay[0].run.status == "completed"


@pytest.mark.parametrize(
    "processor, enable_events, expect_progress",
    [("core", True, True), ("pro", False, False), ("ultra8x-fast", None, True), ("lite-fast", None, False)],
)
def test_enable_events_flag_and_default(client: Parallel, processor, enable_events, expect_progress):
    kwargs = {} if enable_events is None else {"enable_events": enable_events}
    run = client.task_run.create(input="flag", processor=processor, **kwargs)
    client.task_run.result(run.run_id)
    types = [check_event(e)["type"] for e in client.task_run.events(run.run_id)]
    progress = [t for t in types if t != "task_run.state"]
    assert bool(progress) == expect_progress, types


def test_events_stream_ends_when_the_run_is_cancelled(client: Parallel):
    run = client.task_run.create(input="cancel me", processor="ultra", metadata={"mock_delay_ms": 10000})
    wait_for_status(client, run.run_id, "running")
    started = time.monotonic()
    events = []
    for event in client.task_run.events(run.run_id):
        check_event(event)
        events.append(event)
        if len(events) == 1:
            assert event.type == "task_run.state" and event.run.status == "running"
            client.post(f"/v1/tasks/runs/{run.run_id}/cancel", cast_to=TaskRun)
    assert time.monotonic() - started < 8, "the cancel interrupted the delay"
    assert events[-1].type == "task_run.state"
    assert events[-1].run.status == "cancelled" and events[-1].output is None
    assert check_run(client.task_run.retrieve(run.run_id))["status"] == "cancelled"


def test_events_of_a_failed_run(client: Parallel):
    run = client.task_run.create(input="fail", processor="pro", metadata={"mock_fail": "bad luck"})
    wait_for_status(client, run.run_id, "failed")
    events = list(client.task_run.events(run.run_id))
    for event in events:
        check_event(event)
    assert events[-1].type == "task_run.state" and events[-1].run.status == "failed"
    assert events[-1].output is None and events[-1].run.error.message == "bad luck"


def test_result_waits_for_a_slow_run(client: Parallel):
    run = client.task_run.create(
        input={"q": "wait for me"}, processor="core", metadata={"mock_delay_ms": 500}, task_spec=JSON_SPEC
    )
    started = time.monotonic()
    result = client.task_run.result(run.run_id, api_timeout=15)
    assert time.monotonic() - started >= 0.3
    check_result(result, JSON_SPEC["output_schema"])


def test_result_of_a_failed_run_is_not_found(client: Parallel):
    run = client.task_run.create(input="doomed", processor="core", metadata={"mock_fail": "forced failure for the suite"})
    failed = check_run(wait_for_status(client, run.run_id, "failed"))
    assert failed["error"]["message"] == "forced failure for the suite"
    assert failed["error"]["detail"] is None
    with pytest.raises(NotFoundError) as caught:
        client.task_run.result(run.run_id)
    from conftest import check_api_error

    error = check_api_error(caught.value, 404)
    assert error["message"] == f"run {run.run_id} failed: forced failure for the suite"
    assert error["detail"] == {"run_id": run.run_id, "status": "failed"}


def test_transient_failures_are_retried_with_warnings(client: Parallel):
    run = client.task_run.create(input="flaky", processor="lite", metadata={"mock_fail_times": 2})
    result = client.task_run.result(run.run_id)
    check_result(result, None)
    data = check_run(result.run)
    assert [w["type"] for w in data["warnings"]] == ["warning", "warning"]
    assert [w["detail"] for w in data["warnings"]] == [{"attempt": 1}, {"attempt": 2}]


def test_validation_warnings(client: Parallel):
    spec = {
        "input_schema": {
            "type": "json",
            "json_schema": {"type": "object", "properties": {"name": {"type": "string"}}},
        },
        "output_schema": {
            "type": "json",
            "json_schema": {
                "type": "object",
                "properties": {"answer": {"type": "string"}, "sources": {"type": "array", "items": {"type": "string"}}},
                "required": ["answer", "sources"],
            },
        },
    }
    run = client.task_run.create(input={"name": 5}, processor="lite", task_spec=spec)
    data = check_run(run)
    assert [w["type"] for w in data["warnings"]] == ["input_validation_warning", "spec_validation_warning"]
    result = client.task_run.result(run.run_id)
    check_result(result, spec["output_schema"])
    assert [w.type for w in result.run.warnings] == ["input_validation_warning", "spec_validation_warning"]


def test_echo_processor_returns_the_input(client: Parallel):
    run = client.task_run.create(
        input={"company": "Parallel", "hq": {"city": "Palo Alto", "country": "US"}},
        processor="echo",
        task_spec={"output_schema": {"type": "json", "json_schema": {"type": "object"}}},
    )
    result = client.task_run.result(run.run_id)
    check_result(result, {"type": "json", "json_schema": {"type": "object"}})
    assert result.output.content == {"company": "Parallel", "hq": {"city": "Palo Alto", "country": "US"}}


# ---------------------------------------------------------------------------
# execute()


class Sector(str, Enum):
    software = "software"
    hardware = "hardware"
    services = "services"


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(description="Full name")
    role: Optional[str] = pydantic.Field(default=None, description="Job title, if known")


class CompanyProfile(pydantic.BaseModel):
    """A company, as a pydantic output type."""

    model_config = pydantic.ConfigDict(extra="forbid")

    name: str = pydantic.Field(description="The company's name")
    founded: int = pydantic.Field(ge=1800, le=2100)
    sector: Sector
    founded_on: datetime.date = pydantic.Field(description="Founding date")
    founders: List[Person]
    ceo: Person
    valuation_usd: Optional[float] = None


def test_execute_with_a_pydantic_output_type(client: Parallel):
    schema = CompanyProfile.model_json_schema()
    # The features the spec says must work are in this schema.
    assert {"$defs", "title"} <= set(schema)
    text = str(schema)
    for feature in ("$ref", "anyOf", "enum", "format", "additionalProperties"):
        assert feature in text, feature

    result = client.task_run.execute(input="Parallel Web Systems", processor="core", output=CompanyProfile, timeout=30)
    assert isinstance(result, ParsedTaskRunResult)
    check_result(result, {"type": "json", "json_schema": schema})
    parsed = result.output.parsed
    assert isinstance(parsed, CompanyProfile)
    assert parsed == CompanyProfile.model_validate(result.output.content)

    # The run was created with the model's schema, unchanged.
    spec = client.task_run.retrieve_input(result.run.run_id).task_spec
    assert spec.output_schema.to_dict() == {"json_schema": schema, "type": "json"}


def test_execute_waits_for_a_slow_run(client: Parallel):
    started = time.monotonic()
    result = client.task_run.execute(
        input="slow execute", processor="base", metadata={"mock_delay_ms": 700}, output=CompanyProfile, timeout=30
    )
    assert time.monotonic() - started >= 0.5
    assert isinstance(result.output.parsed, CompanyProfile)


@pytest.mark.parametrize(
    "output",
    [
        "A short description of the company",
        {"type": "text", "description": "A short description"},
        JSON_SPEC["output_schema"],
        None,
    ],
    ids=["string", "text-schema", "json-schema", "none"],
)
def test_execute_with_schema_params(client: Parallel, output):
    kwargs = {} if output is None else {"output": output}
    result = client.task_run.execute(input={"company": "Parallel"}, processor="lite", timeout=30, **kwargs)
    assert isinstance(result, TaskRunResult) and not isinstance(result, ParsedTaskRunResult)
    check_result(result, output)


def test_execute_of_a_failing_run_raises_not_found(client: Parallel):
    with pytest.raises(NotFoundError):
        client.task_run.execute(input="x", processor="core", metadata={"mock_fail": "nope"}, timeout=30)


def test_execute_times_out(fast_client: Parallel):
    # execute() polls /result until its own deadline, then TimeoutError.
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        fast_client.task_run.execute(input="x", processor="core", metadata={"mock_delay_ms": 30000}, timeout=1.5)
    assert time.monotonic() - started < 10
