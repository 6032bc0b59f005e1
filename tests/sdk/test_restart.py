"""A restart on the same database, as a user of the SDK sees it: cursors
resume across it, and a run that was running when the server stopped
completes after it."""

from __future__ import annotations

import os
import shutil
import tempfile

from parallel import Parallel

from conftest import JSON_SPEC, Server, check_event, check_output, check_result


def test_events_resume_across_a_restart():
    data_dir = tempfile.mkdtemp(prefix="taskyard-sdk-restart-")
    db = os.path.join(data_dir, "t.db")
    first = Server(db=db)
    try:
        client = Parallel(api_key="test", base_url=first.base_url)
        group = client.task_group.create()
        added = client.task_group.add_runs(
            group.task_group_id,
            inputs=[{"input": f"q{i}", "processor": "lite"} for i in range(4)]
            + [{"input": "long", "processor": "core", "metadata": {"mock_delay_ms": 4000}}],
            default_task_spec=JSON_SPEC,
        )
        seen = []
        for event in client.task_group.events(group.task_group_id):
            check_event(event)
            seen.append(event.to_dict())
            if sum(1 for e in seen if e["type"] == "task_run.state") == 4:
                break  # the four fast runs are done; the long one is running
        assert client.task_run.retrieve(added.run_ids[4]).status == "running"
    finally:
        code = first.stop()
    assert code == 0, first.stderr()

    second = Server(db=db)
    try:
        client = Parallel(api_key="test", base_url=second.base_url)
        # The run that was running at shutdown went back to the queue and
        # completes now.
        result = client.task_run.result(added.run_ids[4], api_timeout=30)
        check_result(result, JSON_SPEC["output_schema"])
        # Resuming from the last event seen before the restart: no gap, no
        # duplicate; the whole stream equals what was seen plus the tail.
        tail = [e.to_dict() for e in client.task_group.events(group.task_group_id, last_event_id=seen[-1]["event_id"])]
        whole = [e.to_dict() for e in client.task_group.events(group.task_group_id)]
        assert whole == seen + tail
        assert tail[-1]["type"] == "task_group_status"
        assert tail[-1]["status"]["task_run_status_counts"] == {"completed": 5}
        runs = list(client.task_group.get_runs(group.task_group_id, include_output=True))
        assert [r.run.run_id for r in runs] == added.run_ids
        for event in runs:
            check_output(event.output, JSON_SPEC["output_schema"])
    finally:
        code = second.stop()
        log = second.stderr()
        first.cleanup()
        second.cleanup()
        shutil.rmtree(data_dir, ignore_errors=True)
    assert code == 0, log
