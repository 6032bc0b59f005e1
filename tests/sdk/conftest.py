"""Fixtures of the SDK proof: a taskyard server, SDK clients, and checks.

The server is the built binary (``TASKYARD_BIN``, else ``target/debug/taskyard``)
started once per session on a free port with a temporary database. Every
wait in the suite polls with a deadline; nothing sleeps to wait for state.

The checks validate what the SDK returns (its ``to_dict()``, which keeps the
wire's key names and leaves out keys the wire did not carry) against JSON
Schemas of the spec's objects (section 2), and every run output against the
output schema of its task.
"""

from __future__ import annotations

import os
import re
import queue
import shutil
import signal
import pathlib
import tempfile
import threading
import subprocess
from typing import Any, Callable, Dict, List, Optional

import jsonschema
import pytest
from parallel import Parallel

import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "support"))
from taskyard_server import LISTENING, ROOT, WAIT_S, Server, binary  # noqa: E402
from taskyard_server import wait_until as shared_wait_until  # noqa: E402


@pytest.fixture(scope="session")
def server():
    srv = Server()
    yield srv
    srv.stop_cleanly()


@pytest.fixture(scope="session")
def client(server: Server) -> Parallel:
    return Parallel(api_key="test", base_url=server.base_url)


@pytest.fixture(scope="session")
def fast_client(server: Server) -> Parallel:
    """A client that does not retry: for statuses the SDK would retry."""
    return Parallel(api_key="test", base_url=server.base_url, max_retries=0)


def request_count(server: Server, method: str, route: str, status: int) -> int:
    """`taskyard_http_requests_total` for one route pattern and status, from
    /metrics: how many requests the server really answered (SDK retries
    included). Tests run one at a time, so differences are exact."""
    import httpx

    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    wanted = f'taskyard_http_requests_total{{method="{method}",route="{route}",status="{status}"}} '
    for line in text.splitlines():
        if line.startswith(wanted):
            return int(float(line[len(wanted):]))
    return 0


# ---------------------------------------------------------------------------
# Waiting


def wait_until(predicate: Callable[[], Any], what: str, deadline_s: float = WAIT_S, every_s: float = 0.02) -> Any:
    """Polls `predicate` until it returns a truthy value, or fails."""
    return shared_wait_until(what, predicate, deadline_s=deadline_s, every_s=every_s)


def wait_for_status(client: Parallel, run_id: str, statuses: "set[str] | str", deadline_s: float = WAIT_S):
    wanted = {statuses} if isinstance(statuses, str) else set(statuses)

    def check():
        run = client.task_run.retrieve(run_id)
        return run if run.status in wanted else None

    return wait_until(check, f"run {run_id} to reach {sorted(wanted)}", deadline_s)


# ---------------------------------------------------------------------------
# Wire shapes (spec section 2), as JSON Schemas

TIMESTAMP = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"
RUN_ID = r"^trun_[0-9a-f]{32}$"
GROUP_ID = r"^tgrp_[0-9a-f]{32}$"
UUID4 = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
CURSOR = r"^(0|[1-9][0-9]*)$"
STATUSES = ["queued", "action_required", "running", "completed", "failed", "cancelling", "cancelled"]


def _obj(properties: Dict[str, Any], required: Optional[List[str]] = None) -> Dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


def _nullable(schema: Dict[str, Any]) -> Dict[str, Any]:
    return {"anyOf": [{"type": "null"}, schema]}


METADATA = {
    "type": "object",
    "additionalProperties": {"type": ["string", "number", "boolean"]},
}

ERROR_OBJECT = _obj(
    {
        "ref_id": {"type": "string", "pattern": UUID4},
        "message": {"type": "string", "minLength": 1},
        "detail": {"type": ["object", "null"]},
    }
)

WARNING = _obj(
    {
        "type": {"enum": ["spec_validation_warning", "input_validation_warning", "warning"]},
        "message": {"type": "string"},
        "detail": {"type": ["object", "null"]},
    }
)

TASK_RUN = {
    **_obj(
        {
            "run_id": {"type": "string", "pattern": RUN_ID},
            "interaction_id": {"type": "string", "pattern": RUN_ID},
            "status": {"enum": STATUSES},
            "is_active": {"type": "boolean"},
            "processor": {"type": "string", "minLength": 1},
            "metadata": _nullable(METADATA),
            "error": _nullable(ERROR_OBJECT),
            "warnings": _nullable({"type": "array", "items": WARNING, "minItems": 1}),
            "taskgroup_id": _nullable({"type": "string", "pattern": GROUP_ID}),
            "created_at": {"type": "string", "pattern": TIMESTAMP},
            "modified_at": {"type": "string", "pattern": TIMESTAMP},
        }
    ),
    "allOf": [
        # is_active is true exactly for queued, running, cancelling
        {
            "if": {"properties": {"status": {"enum": ["queued", "running", "cancelling"]}}},
            "then": {"properties": {"is_active": {"const": True}}},
            "else": {"properties": {"is_active": {"const": False}}},
        },
        # error is set only when failed
        {
            "if": {"properties": {"status": {"const": "failed"}}},
            "then": {"properties": {"error": ERROR_OBJECT}},
            "else": {"properties": {"error": {"type": "null"}}},
        },
    ],
}

TASK_GROUP_STATUS = _obj(
    {
        "num_task_runs": {"type": "integer", "minimum": 0},
        "task_run_status_counts": {
            "type": "object",
            "propertyNames": {"enum": STATUSES},
            "additionalProperties": {"type": "integer", "minimum": 1},
        },
        "is_active": {"type": "boolean"},
        "status_message": {"type": ["string", "null"]},
        "modified_at": {"type": "string", "pattern": TIMESTAMP},
    }
)

TASK_GROUP = _obj(
    {
        "taskgroup_id": {"type": "string", "pattern": GROUP_ID},
        "status": TASK_GROUP_STATUS,
        "created_at": {"type": "string", "pattern": TIMESTAMP},
        "metadata": _nullable(METADATA),
    }
)

TASK_GROUP_RUN_RESPONSE = _obj(
    {
        "run_ids": {"type": "array", "items": {"type": "string", "pattern": RUN_ID}, "minItems": 1},
        "status": TASK_GROUP_STATUS,
        "run_cursor": _nullable({"type": "string", "pattern": CURSOR}),
        "event_cursor": _nullable({"type": "string", "pattern": CURSOR}),
    }
)

CITATION = _obj(
    {
        "url": {"type": "string"},
        "title": {"type": ["string", "null"]},
        "excerpts": _nullable({"type": "array", "items": {"type": "string"}}),
    }
)

FIELD_BASIS = _obj(
    {
        "field": {"type": "string"},
        "reasoning": {"type": "string"},
        "citations": {"type": "array", "items": CITATION},
        "confidence": {"enum": ["low", "medium", "high", None]},
    }
)

JSON_OUTPUT = _obj(
    {
        "type": {"const": "json"},
        "content": {"type": "object"},
        "basis": {"type": "array", "items": FIELD_BASIS},
        "output_schema": {"type": ["object", "null"]},
        "mcp_tool_calls": {"type": ["array", "null"]},
        "beta_fields": {"type": ["object", "null"]},
    }
)

TEXT_OUTPUT = _obj(
    {
        "type": {"const": "text"},
        "content": {"type": "string"},
        "basis": {"type": "array", "items": FIELD_BASIS, "minItems": 1, "maxItems": 1},
        "mcp_tool_calls": {"type": ["array", "null"]},
        "beta_fields": {"type": ["object", "null"]},
    }
)

OUTPUT = {"oneOf": [JSON_OUTPUT, TEXT_OUTPUT]}

RUN_INPUT = _obj(
    {
        "input": {"type": ["string", "object"]},
        "processor": {"type": "string"},
        "metadata": METADATA,
        "task_spec": {"type": "object", "required": ["output_schema"]},
        "enable_events": {"type": "boolean"},
        "source_policy": {"type": "object"},
        "advanced_settings": {"type": "object"},
        "mcp_servers": {"type": "array"},
        "memory_scope_key": {"type": "string"},
        "previous_interaction_id": {"type": "string"},
        "webhook": {"type": "object"},
    },
    required=["input", "processor"],
)

TASK_RUN_RESULT = _obj({"run": TASK_RUN, "output": OUTPUT})

TASK_RUN_EVENT = _obj(
    {
        "type": {"const": "task_run.state"},
        "event_id": _nullable({"type": "string", "pattern": CURSOR}),
        "run": TASK_RUN,
        "input": _nullable(RUN_INPUT),
        "output": _nullable(OUTPUT),
    }
)

TASK_GROUP_STATUS_EVENT = _obj(
    {
        "type": {"const": "task_group_status"},
        "event_id": {"type": "string", "pattern": CURSOR},
        "status": TASK_GROUP_STATUS,
    }
)

PROGRESS_MESSAGE_EVENT = _obj(
    {
        "type": {
            "enum": [
                "task_run.progress_msg.plan",
                "task_run.progress_msg.search",
                "task_run.progress_msg.result",
                "task_run.progress_msg.tool_call",
                "task_run.progress_msg.exec_status",
            ]
        },
        "message": {"type": "string"},
        "timestamp": {"type": "string", "pattern": TIMESTAMP},
    }
)

PROGRESS_STATS_EVENT = _obj(
    {
        "type": {"const": "task_run.progress_stats"},
        "progress_meter": {"type": "number", "minimum": 0, "maximum": 100},
        "source_stats": _obj(
            {
                "num_sources_considered": {"type": ["integer", "null"]},
                "num_sources_read": {"type": ["integer", "null"]},
                "sources_read_sample": _nullable({"type": "array", "items": {"type": "string"}}),
            }
        ),
    }
)

ERROR_EVENT = _obj({"type": {"const": "error"}, "error": ERROR_OBJECT})

ERROR_RESPONSE = _obj(
    {
        "type": {"const": "error"},
        "error": _obj(
            {
                "ref_id": {"type": "string", "pattern": UUID4},
                "message": {"type": "string", "minLength": 1},
                "detail": {"type": ["object", "null"]},
            }
        ),
    }
)

VALIDATION_DETAIL = _obj(
    {
        "errors": {
            "type": "array",
            "minItems": 1,
            "items": {
                **_obj(
                    {
                        "loc": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": ["string", "integer"]},
                            "prefixItems": [{"enum": ["body", "query", "header", "path"]}],
                        },
                        "msg": {"type": "string"},
                        "type": {"enum": ["missing", "type_error", "value_error", "unknown_processor", "limit_exceeded"]},
                    }
                ),
                "if": {"properties": {"type": {"const": "limit_exceeded"}}},
                "then": {"required": ["limit", "max", "got"]},
            },
        }
    }
)


def check_wire(value: Any, schema: Dict[str, Any], what: str = "object") -> Dict[str, Any]:
    """Validates an SDK object (or plain dict) against a wire schema."""
    data = value.to_dict(mode="json") if hasattr(value, "to_dict") else value
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        lines = "\n".join(f"  at {list(e.path)}: {e.message}" for e in errors[:10])
        raise AssertionError(f"{what} does not match the spec's shape:\n{lines}\nvalue: {data!r}"[:6000])
    return data


def check_run(run: Any) -> Dict[str, Any]:
    return check_wire(run, TASK_RUN, "TaskRun")


def check_group(group: Any) -> Dict[str, Any]:
    return check_wire(group, TASK_GROUP, "TaskGroup")


def check_event(event: Any) -> Dict[str, Any]:
    schema = {
        "task_run.state": TASK_RUN_EVENT,
        "task_group_status": TASK_GROUP_STATUS_EVENT,
        "task_run.progress_stats": PROGRESS_STATS_EVENT,
        "error": ERROR_EVENT,
    }.get(event.type, PROGRESS_MESSAGE_EVENT)
    return check_wire(event, schema, f"event {event.type}")


# ---------------------------------------------------------------------------
# Outputs against their task's schema


def _validator(schema: Dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def expected_basis_fields(content: Dict[str, Any]) -> List[str]:
    """Spec 2.4: one entry per top-level key in key order; an array-valued
    key also gets `key.0`, `key.1`, ... right after its own entry."""
    fields: List[str] = []
    for key, value in content.items():
        fields.append(key)
        if isinstance(value, list):
            fields.extend(f"{key}.{index}" for index in range(len(value)))
    return fields


def check_output(output: Any, output_schema: Any) -> Dict[str, Any]:
    """Validates an output's shape, then its content against the task's
    output schema: a JsonSchema's `json_schema`, a TextSchema or bare
    string (text), or auto (the schema the output names)."""
    data = check_wire(output, OUTPUT, "output")
    if isinstance(output_schema, str):
        kind = "text"
    elif output_schema is None:
        kind = "auto"
    else:
        kind = output_schema.get("type") or ("json" if "json_schema" in output_schema else "text")
    if kind == "text":
        assert data["type"] == "text", f"a text schema gave a {data['type']} output"
        assert isinstance(data["content"], str) and data["content"], "empty text content"
        assert [b["field"] for b in data["basis"]] == ["output"]
        return data
    assert data["type"] == "json", f"a {kind} schema gave a {data['type']} output"
    if kind == "json":
        schema = output_schema["json_schema"]
        assert data["output_schema"] is None, "output_schema is set only for auto"
    else:
        schema = data["output_schema"]
        assert isinstance(schema, dict), "an auto output must name the schema it used"
    errors = list(_validator(schema).iter_errors(data["content"]))
    assert not errors, f"content {data['content']!r} does not validate against {schema!r}: {errors[0].message}"
    assert [b["field"] for b in data["basis"]] == expected_basis_fields(data["content"])
    return data


def check_result(result: Any, output_schema: Any) -> Dict[str, Any]:
    data = check_wire(result, TASK_RUN_RESULT, "TaskRunResult")
    assert data["run"]["status"] == "completed"
    check_output(result.output, output_schema)
    return data


def check_api_error(error: Any, status: int) -> Dict[str, Any]:
    """An SDK APIStatusError: its status and the hosted ErrorResponse body.

    The SDK keeps the parsed body in `error.body`; the error object is
    `error.body["error"]`."""
    assert error.status_code == status, f"expected {status}, got {error.status_code}: {error.body!r}"
    body = error.response.json()
    check_wire(body, ERROR_RESPONSE, f"{status} ErrorResponse")
    assert error.response.headers["content-type"].startswith("application/json")
    if status in (400, 413, 422):
        check_wire(body["error"]["detail"], VALIDATION_DETAIL, f"{status} detail")
    return body["error"]


JSON_SPEC = {
    "output_schema": {
        "type": "json",
        "json_schema": {
            "type": "object",
            "properties": {
                "company": {"type": "string", "description": "The company name"},
                "founded": {"type": "integer", "minimum": 1800, "maximum": 2100},
                "public": {"type": "boolean"},
                "products": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "hq": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
                    "required": ["city", "country"],
                    "additionalProperties": False,
                },
            },
            "required": ["company", "founded", "public", "products", "hq"],
            "additionalProperties": False,
        },
    }
}
