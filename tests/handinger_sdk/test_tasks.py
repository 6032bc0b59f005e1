"""Tasks and workers with the official `handinger` SDK 0.18.0 against
taskyard (spec handinger-tasks-api.md, sections 2 to 4), strict mode."""

from __future__ import annotations

import pytest
from handinger import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    Handinger,
    NotFoundError,
)
from handinger.types import TaskWithTurns

from conftest import clock, wait_until


def finished(client: Handinger, task_id: str) -> TaskWithTurns:
    return wait_until(
        f"task {task_id} to finish",
        lambda: (lambda t: t if t.task.status in ("completed", "error", "aborted") else None)(
            client.tasks.retrieve(task_id)
        ),
    )


def test_a_task_runs_to_completion(client: Handinger):
    worker = client.tasks.create(input="What's the weather today in Barcelona?")
    assert worker.object == "worker"
    assert worker.status in ("pending", "running", "completed")
    assert worker.id.startswith("wrk_")
    task_id = worker.taskId  # an extra key, readable as an attribute (spec choice 2)
    assert task_id.startswith("tsk_")
    assert worker.metadata["taskId"] == task_id
    done = finished(client, task_id)
    assert done.task.status == "completed"
    assert done.task.triggered_by == "api"
    assert done.task.worker_id == worker.id
    assert done.task.totals.turn_count == 1
    [turn] = done.turns
    assert turn.seq == 1 and turn.status == "completed" and turn.role == "user"
    assert turn.input == "What's the weather today in Barcelona?"
    assert turn.output_text, "the mock answered"
    assert turn.id == worker.turnId and turn.id.startswith("trun_")
    assert turn.completed_at is not None and turn.started_at <= turn.completed_at
    # The worker now reads as of its task.
    again = client.workers.retrieve(worker.id)
    assert again.status == "completed" and not again.running
    assert again.output_text == turn.output_text


def test_a_follow_up_turn_with_the_same_task_id(client: Handinger):
    first = client.tasks.create(input="Name a city.", task_id="tsk_client_chosen-1")
    assert first.taskId == "tsk_client_chosen-1"
    second = client.tasks.create(input="And its country?", task_id="tsk_client_chosen-1")
    assert second.id == first.id, "the task's worker is used"
    done = wait_until(
        "both turns",
        lambda: (lambda t: t if all(x.status == "completed" for x in t.turns) and len(t.turns) == 2 else None)(
            client.tasks.retrieve("tsk_client_chosen-1")
        ),
    )
    assert [turn.seq for turn in done.turns] == [1, 2]
    assert [turn.input for turn in done.turns] == ["Name a city.", "And its country?"]
    assert done.task.totals.turn_count == 2
    # Another worker for that task is a conflict, sent once (not retried).
    other = client.workers.create(instructions="Other")
    with pytest.raises(ConflictError):
        client.tasks.create(input="x", task_id="tsk_client_chosen-1", worker_id=other.id)


def test_a_worker_with_an_output_schema_gives_structured_output(client: Handinger):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    template = client.workers.create(instructions="Answer with the city.", output_schema=schema, title="Cities")
    assert template.output_schema == schema and template.visibility in ("public", "private")
    worker = client.tasks.create(input="The largest city of Spain?", worker_id=template.id, budget="low")
    done = finished(client, worker.taskId)
    [turn] = done.turns
    assert turn.status == "completed"
    assert isinstance(turn.structured_output["city"], str)
    assert isinstance(turn.structured_output["population"], int)
    # Update: only the keys sent change; a null schema clears it.
    updated = client.workers.update(template.id, title="Cities 2", output_schema=None)
    assert updated.title == "Cities 2" and updated.output_schema is None
    assert updated.instructions == "Answer with the city."
    assert client.workers.retrieve_email(template.id).email.startswith(template.id)
    assert client.workers.delete(template.id).deleted is True
    with pytest.raises(NotFoundError):
        client.workers.retrieve(template.id)


def test_archive_keeps_the_task_readable_and_refuses_new_turns(client: Handinger):
    worker = client.tasks.create(input="Archive me")
    finished(client, worker.taskId)
    assert client.tasks.delete(worker.taskId).archived is True
    assert client.tasks.delete(worker.taskId).archived is True
    assert client.tasks.retrieve(worker.taskId).task.id == worker.taskId
    with pytest.raises(ConflictError):
        client.tasks.create(input="more", task_id=worker.taskId)


def test_abort_stops_the_running_turn(client: Handinger):
    worker = client.tasks.create(input="Take your time", budget="high")
    aborted = client.post(f"/api/tasks/{worker.taskId}/abort", cast_to=TaskWithTurns)
    assert aborted.turns[0].id == worker.turnId
    done = finished(client, worker.taskId)
    assert done.task.status == "aborted"
    with pytest.raises(ConflictError):
        client.post(f"/api/tasks/{worker.taskId}/abort", cast_to=TaskWithTurns)
    # A failure or abort never makes the Worker's strict model fail.
    assert client.workers.retrieve(worker.id).status == "completed"


def test_sdk_errors_for_unknown_ids_and_bad_input(client: Handinger, server):
    with pytest.raises(NotFoundError) as caught:
        client.tasks.retrieve("tsk_nobody")
    assert caught.value.body["error"]["code"] == "not_found"
    with pytest.raises(NotFoundError):
        client.workers.retrieve("wrk_nobody")
    with pytest.raises(NotFoundError):
        client.tasks.create(input="x", worker_id="wrk_nobody")
    with pytest.raises(BadRequestError):
        client.tasks.create(input="")
    with pytest.raises(BadRequestError):
        client.tasks.create(input="x", budget="bogus")  # type: ignore[arg-type]
    with pytest.raises(BadRequestError):
        client.workers.create(output_schema={"type": 12})
    wrong = Handinger(api_key="not-the-key", base_url=server.base_url, max_retries=0)
    with pytest.raises(AuthenticationError):
        wrong.tasks.retrieve("tsk_nobody")


def test_an_id_with_reserved_characters_is_one_segment(client: Handinger):
    worker = client.tasks.create(input="odd id", task_id="a/b c?d#e%")
    done = finished(client, "a/b c?d#e%")
    assert done.task.id == "a/b c?d#e%"
    assert worker.taskId == "a/b c?d#e%"


def test_schedules_of_every_kind_are_made_listed_and_cancelled(client: Handinger):
    """Firing is held to a clock the test moves in tests/handinger_schedules.rs;
    here the SDK's models parse every kind in strict mode."""
    import datetime

    worker = client.workers.create(instructions="Report.")
    whens = [
        {"type": "scheduled", "date": datetime.datetime(2099, 6, 1, 9, tzinfo=datetime.timezone.utc)},
        {"type": "delayed", "delayInSeconds": 3600},
        {"type": "cron", "cron": "0 9 * * 1"},
        {"type": "interval", "intervalSeconds": 86400},
    ]
    made = [client.workers.schedules.create(worker.id, input="report", when=when, budget="low") for when in whens]
    assert [schedule.type for schedule in made] == ["scheduled", "delayed", "cron", "interval"]
    assert made[1].delay_in_seconds == 3600 and made[2].cron == "0 9 * * 1" and made[3].interval_seconds == 86400
    assert made[0].next_run_at.year == 2099
    listed = client.workers.schedules.list(worker.id)
    assert listed.worker_id == worker.id
    assert sorted(s.id for s in listed.schedules) == sorted(s.id for s in made)
    assert client.workers.schedules.cancel(made[3].id, worker_id=worker.id).cancelled is True
    assert made[3].id not in [s.id for s in client.workers.schedules.list(worker.id).schedules]
    with pytest.raises(NotFoundError):
        client.workers.schedules.cancel(made[3].id, worker_id=worker.id)
    with pytest.raises(BadRequestError):
        client.workers.schedules.create(worker.id, input="x", when={"type": "delayed", "delayInSeconds": 0})


def test_schedules_of_every_kind_fire_by_the_test_clock(client: Handinger, server):
    """Each kind fires once the server's test clock passes its time: a new
    task on its worker, triggered by the schedule, run to completion."""
    import datetime

    now = datetime.datetime.fromisoformat(clock(server).replace("Z", "+00:00"))
    whens = {
        "scheduled": {"type": "scheduled", "date": now + datetime.timedelta(minutes=10)},
        "delayed": {"type": "delayed", "delayInSeconds": 600},
        "cron": {"type": "cron", "cron": "0 * * * *"},
        "interval": {"type": "interval", "intervalSeconds": 3600},
    }
    workers = {}
    for kind, when in whens.items():
        worker = client.workers.create(instructions=f"Report ({kind}).")
        client.workers.schedules.create(worker.id, input=f"report {kind}", when=when, budget="low")
        workers[kind] = worker.id
    # Nothing is due yet: no worker has a task.
    assert all(getattr(client.workers.retrieve(worker_id), "taskId", None) is None for worker_id in workers.values())

    clock(server, advance_s=3601)
    for kind, worker_id in workers.items():
        task_id = wait_until(
            f"the {kind} schedule to fire",
            lambda: getattr(client.workers.retrieve(worker_id), "taskId", None),
        )
        done = finished(client, task_id)
        assert done.task.triggered_by == "schedule", kind
        assert done.task.status == "completed", kind
        assert done.turns[0].input == f"report {kind}", kind
    # A one-time schedule that fired is no longer listed; a repeating one is.
    assert client.workers.schedules.list(workers["scheduled"]).schedules == []
    assert len(client.workers.schedules.list(workers["interval"]).schedules) == 1
