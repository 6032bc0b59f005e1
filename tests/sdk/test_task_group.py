"""`client.task_group`: create, retrieve, add_runs, events, get_runs, retrieve_run."""

from __future__ import annotations

import time
from typing import Any, Dict, List

import pytest
from parallel import NotFoundError, Parallel

from conftest import (
    JSON_SPEC,
    RUN_INPUT,
    TASK_GROUP_RUN_RESPONSE,
    check_event,
    check_group,
    check_output,
    check_run,
    check_wire,
    wait_until,
)

TEXT_SPEC = {"output_schema": {"type": "text", "description": "One sentence."}}


def drain_events(client: Parallel, group_id: str, **kwargs) -> List[Any]:
    """Reads a group's events stream to its end, checking each event."""
    started = time.monotonic()
    events = list(client.task_group.events(group_id, **kwargs))
    assert time.monotonic() - started < 30
    for event in events:
        check_event(event)
    return events


def ids_of(events: List[Any]) -> List[int]:
    return [int(e.event_id) for e in events]


def test_create_and_retrieve(client: Parallel):
    group = client.task_group.create(metadata={"batch": "sdk", "size": 3, "urgent": False})
    data = check_group(group)
    assert data["metadata"] == {"batch": "sdk", "size": 3, "urgent": False}
    assert data["status"]["num_task_runs"] == 0
    assert data["status"]["task_run_status_counts"] == {}
    assert data["status"]["is_active"] is False
    assert data["status"]["status_message"] is None
    assert data["status"]["modified_at"] == data["created_at"]

    again = check_group(client.task_group.retrieve(group.task_group_id))
    assert again == data

    bare = check_group(client.task_group.create())
    assert bare["metadata"] is None


def test_empty_group_events_end_at_once(client: Parallel):
    group = client.task_group.create()
    events = drain_events(client, group.task_group_id)
    assert all(e.type == "task_group_status" for e in events)
    # Over 3600 s counts as 3600 (not an error); the inactive group ends at once.
    assert drain_events(client, group.task_group_id, api_timeout=100000) == events
    assert list(client.task_group.get_runs(group.task_group_id)) == []


def test_add_runs_and_follow_events_to_the_end(client: Parallel):
    group = client.task_group.create(metadata={"case": "events"})
    inputs = [{"input": f"Company {i}", "processor": "core", "metadata": {"i": i}} for i in range(4)]
    inputs.append({"input": {"company": "Parallel"}, "processor": "lite", "task_spec": TEXT_SPEC})
    added = client.task_group.add_runs(group.task_group_id, inputs=inputs, default_task_spec=JSON_SPEC)
    data = check_wire(added, TASK_GROUP_RUN_RESPONSE, "TaskGroupRunResponse")
    assert len(data["run_ids"]) == 5 and len(set(data["run_ids"])) == 5
    assert data["run_cursor"] is None and data["event_cursor"] is None, "first runs of a group have no cursor"
    assert data["status"]["num_task_runs"] == 5

    events = drain_events(client, group.task_group_id)
    ids = ids_of(events)
    assert ids == sorted(ids) and len(set(ids)) == len(ids), "event ids strictly increase"
    states = [e for e in events if e.type == "task_run.state"]
    assert sorted(e.run.run_id for e in states) == sorted(data["run_ids"]), "one task_run.state per run"
    for event in states:
        assert event.run.status == "completed"
        assert event.run.task_group_id == group.task_group_id
        assert event.input is None and event.output is None
    statuses = [e for e in events if e.type == "task_group_status"]
    assert statuses[0].status.num_task_runs == 5 and statuses[0].status.is_active is True
    last = events[-1]
    assert last.type == "task_group_status" and last.status.is_active is False
    assert last.status.task_run_status_counts == {"completed": 5}

    final = check_group(client.task_group.retrieve(group.task_group_id))
    assert final["status"]["is_active"] is False
    assert final["status"]["task_run_status_counts"] == {"completed": 5}
    assert final["status"]["modified_at"] >= final["created_at"]

    # Each run's output validates against its own or the group's default spec.
    runs = list(client.task_group.get_runs(group.task_group_id, include_output=True, include_input=True))
    assert [r.run.run_id for r in runs] == data["run_ids"], "runs come in the order they were added"
    for event, sent in zip(runs, inputs):
        check_event(event)
        spec = sent.get("task_spec", JSON_SPEC)
        check_output(event.output, spec["output_schema"])
        assert event.input.input == sent["input"]
        assert event.input.task_spec.to_dict()["output_schema"] == spec["output_schema"], (
            "include_input gives the group's default_task_spec when the run had none"
        )


def test_events_resumed_from_a_middle_cursor(client: Parallel):
    group = client.task_group.create()
    client.task_group.add_runs(
        group.task_group_id, inputs=[{"input": f"q{i}", "processor": "lite"} for i in range(6)]
    )
    full = drain_events(client, group.task_group_id)
    assert len(full) >= 8
    whole = [e.to_dict() for e in full]

    for cut in (1, len(full) // 2, len(full) - 1):
        cursor = full[cut - 1].event_id
        tail = drain_events(client, group.task_group_id, last_event_id=cursor)
        assert [e.to_dict() for e in tail] == whole[cut:], f"resume after event {cursor}"

    # Replays equal the first delivery; 0 equals absent; past the end: nothing.
    assert [e.to_dict() for e in drain_events(client, group.task_group_id)] == whole
    assert [e.to_dict() for e in drain_events(client, group.task_group_id, last_event_id="0")] == whole
    assert drain_events(client, group.task_group_id, last_event_id=full[-1].event_id) == []


def test_events_api_timeout_ends_a_live_stream(client: Parallel):
    group = client.task_group.create()
    added = client.task_group.add_runs(
        group.task_group_id, inputs=[{"input": "slow", "processor": "core", "metadata": {"mock_delay_ms": 8000}}]
    )
    started = time.monotonic()
    events = drain_events(client, group.task_group_id, api_timeout=1.0)
    elapsed = time.monotonic() - started
    assert 0.8 <= elapsed < 5, elapsed
    assert [e.type for e in events] == ["task_group_status"]
    assert events[0].status.is_active is True
    client.post(f"/v1/tasks/groups/{group.task_group_id}/cancel", cast_to=object)
    wait_until(
        lambda: client.task_run.retrieve(added.run_ids[0]).status == "cancelled", "the slow run to be cancelled"
    )


def test_add_1000_runs_at_once(client: Parallel):
    group = client.task_group.create(metadata={"case": "thousand"})
    inputs = [{"input": {"n": i}, "processor": "lite", "metadata": {"i": i}} for i in range(1000)]
    started = time.monotonic()
    added = client.task_group.add_runs(group.task_group_id, inputs=inputs, default_task_spec=TEXT_SPEC)
    data = check_wire(added, TASK_GROUP_RUN_RESPONSE, "TaskGroupRunResponse")
    assert len(data["run_ids"]) == 1000 and len(set(data["run_ids"])) == 1000
    assert data["status"]["num_task_runs"] == 1000

    events = drain_events(client, group.task_group_id)
    states = [e for e in events if e.type == "task_run.state"]
    assert len(states) == 1000
    assert {e.run.run_id for e in states} == set(data["run_ids"])
    assert events[-1].type == "task_group_status"
    assert events[-1].status.task_run_status_counts == {"completed": 1000}
    assert events[-1].status.is_active is False

    runs = list(client.task_group.get_runs(group.task_group_id, include_input=True, include_output=True))
    assert [r.run.run_id for r in runs] == data["run_ids"]
    cursors = [int(r.event_id) for r in runs]
    assert cursors == sorted(cursors) and len(set(cursors)) == 1000
    for index, event in enumerate(runs):
        assert event.run.status == "completed"
        assert event.input.input == {"n": index}
        assert event.run.metadata == {"i": index}
        check_output(event.output, TEXT_SPEC["output_schema"])
    for event in runs[:20]:
        check_event(event)
    assert time.monotonic() - started < 30


def test_add_runs_while_earlier_runs_are_active(client: Parallel):
    group = client.task_group.create()
    first = client.task_group.add_runs(
        group.task_group_id,
        inputs=[{"input": f"slow {i}", "processor": "core", "metadata": {"mock_delay_ms": 1200}} for i in range(2)],
    )
    wait_until(
        lambda: client.task_group.retrieve(group.task_group_id).status.task_run_status_counts.get("running"),
        "the first runs to start",
    )
    second = client.task_group.add_runs(
        group.task_group_id,
        inputs=[{"input": f"fast {i}", "processor": "lite"} for i in range(3)],
        default_task_spec=JSON_SPEC,
        refresh_status=False,
    )
    data = check_wire(second, TASK_GROUP_RUN_RESPONSE, "TaskGroupRunResponse")
    assert data["status"]["num_task_runs"] == 5
    assert data["status"]["is_active"] is True
    assert data["run_cursor"] is not None and data["event_cursor"] is not None
    assert data["run_cursor"] == data["event_cursor"]
    counts = data["status"]["task_run_status_counts"]
    assert sum(counts.values()) == 5
    assert counts.get("running", 0) >= 1, f"the first runs were still running: {counts}"

    events = drain_events(client, group.task_group_id)
    last = events[-1]
    assert last.type == "task_group_status" and last.status.task_run_status_counts == {"completed": 5}
    # Exactly one inactive status: the group became inactive only at the end.
    assert [e.status.is_active for e in events if e.type == "task_group_status"][-1] is False
    assert sum(1 for e in events if e.type == "task_group_status" and not e.status.is_active) == 1

    # The runs stream from run_cursor: this request's runs, in order.
    later = list(client.task_group.get_runs(group.task_group_id, last_event_id=second.run_cursor))
    assert [r.run.run_id for r in later] == second.run_ids
    everything = list(client.task_group.get_runs(group.task_group_id))
    assert [r.run.run_id for r in everything] == first.run_ids + second.run_ids

    # The events stream from event_cursor: every group event from the second
    # add on (its status event, then run completions).
    resumed = drain_events(client, group.task_group_id, last_event_id=second.event_cursor)
    assert [e.to_dict() for e in resumed] == [e.to_dict() for e in events if int(e.event_id) > int(second.event_cursor)]
    assert resumed[0].type == "task_group_status" and resumed[0].status.num_task_runs == 5


def test_add_runs_to_an_inactive_group(client: Parallel):
    group = client.task_group.create()
    client.task_group.add_runs(group.task_group_id, inputs=[{"input": "a", "processor": "lite"}])
    drain_events(client, group.task_group_id)
    assert client.task_group.retrieve(group.task_group_id).status.is_active is False
    again = client.task_group.add_runs(group.task_group_id, inputs=[{"input": "b", "processor": "lite"}])
    assert again.status.num_task_runs == 2
    assert again.run_cursor is not None
    events = drain_events(client, group.task_group_id, last_event_id=again.event_cursor)
    assert events[-1].type == "task_group_status"
    assert events[-1].status.task_run_status_counts == {"completed": 2}


def test_get_runs_with_include_and_status_filters(client: Parallel):
    group = client.task_group.create()
    inputs: List[Dict[str, Any]] = [
        {"input": "ok 1", "processor": "core", "task_spec": JSON_SPEC},
        {"input": "bad", "processor": "core", "metadata": {"mock_fail": "boom"}},
        {"input": {"q": "ok 2"}, "processor": "echo", "task_spec": TEXT_SPEC},
        {"input": "slow", "processor": "core", "metadata": {"mock_delay_ms": 8000}},
    ]
    added = client.task_group.add_runs(group.task_group_id, inputs=inputs)
    ok1, bad, ok2, slow = added.run_ids
    wait_until(
        lambda: client.task_group.retrieve(group.task_group_id).status.task_run_status_counts
        in ({"completed": 2, "failed": 1, "running": 1},),
        "three runs to finish and one to run",
    )

    plain = list(client.task_group.get_runs(group.task_group_id))
    assert [r.run.run_id for r in plain] == added.run_ids
    for event in plain:
        data = check_event(event)
        assert data["input"] is None and data["output"] is None
        assert data["event_id"] is not None

    with_output = {r.run.run_id: r for r in client.task_group.get_runs(group.task_group_id, include_output=True)}
    check_output(with_output[ok1].output, JSON_SPEC["output_schema"])
    check_output(with_output[ok2].output, TEXT_SPEC["output_schema"])
    assert with_output[ok2].output.content == '{"q":"ok 2"}'
    assert with_output[bad].output is None and with_output[slow].output is None
    assert all(r.input is None for r in with_output.values())

    with_input = list(client.task_group.get_runs(group.task_group_id, include_input=True))
    for event, sent in zip(with_input, inputs):
        got = check_wire(event.input, RUN_INPUT, "RunInput")
        assert got["input"] == sent["input"] and got["processor"] == sent["processor"]
        assert event.output is None

    def by_status(status: str) -> List[str]:
        return [r.run.run_id for r in client.task_group.get_runs(group.task_group_id, status=status)]

    assert by_status("completed") == [ok1, ok2]
    assert by_status("failed") == [bad]
    assert by_status("running") == [slow]
    assert by_status("queued") == []

    failed = list(client.task_group.get_runs(group.task_group_id, status="failed", include_output=True))
    assert check_run(failed[0].run)["error"]["message"] == "boom"
    assert failed[0].output is None

    # Cancel the slow run; the filter follows the current status.
    client.post(f"/v1/tasks/runs/{slow}/cancel", cast_to=object)
    wait_until(lambda: by_status("cancelled") == [slow], "the slow run to be cancelled")
    assert by_status("running") == []
    final = drain_events(client, group.task_group_id)
    assert final[-1].status.task_run_status_counts == {"completed": 2, "failed": 1, "cancelled": 1}


def test_retrieve_run(client: Parallel):
    group = client.task_group.create()
    added = client.task_group.add_runs(
        group.task_group_id, inputs=[{"input": "one", "processor": "lite", "metadata": {"k": "v"}}]
    )
    run_id = added.run_ids[0]
    run = client.task_group.retrieve_run(run_id, task_group_id=group.task_group_id)
    data = check_run(run)
    assert data["run_id"] == run_id and data["taskgroup_id"] == group.task_group_id
    assert data["metadata"] == {"k": "v"}
    assert run.task_group_id == group.task_group_id
    drain_events(client, group.task_group_id)
    done = check_run(client.task_group.retrieve_run(run_id, task_group_id=group.task_group_id))
    assert done["status"] == "completed"
    assert done == check_run(client.task_run.retrieve(run_id))

    other = client.task_group.create()
    with pytest.raises(NotFoundError):
        client.task_group.retrieve_run(run_id, task_group_id=other.task_group_id)
    standalone = client.task_run.create(input="alone", processor="lite")
    with pytest.raises(NotFoundError):
        client.task_group.retrieve_run(standalone.run_id, task_group_id=group.task_group_id)
