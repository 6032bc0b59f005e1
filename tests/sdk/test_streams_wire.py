"""What the SDK's stream decoder depends on (spec section 5), read through
the SDK's own raw-response API: headers, `event:` equal to the JSON `type`,
one `data:` line of JSON, never `id:` or `retry:`. And the async client,
for the three streams."""

from __future__ import annotations

import asyncio
import json
from typing import List, Tuple

from parallel import AsyncParallel, Parallel

from conftest import JSON_SPEC, Server, check_event, check_output, check_result


def frames(response) -> List[List[Tuple[str, str]]]:
    """Splits an SSE body into events, each a list of (field, value)."""
    events: List[List[Tuple[str, str]]] = []
    current: List[Tuple[str, str]] = []
    for line in response.iter_lines():
        if line == "":
            if current:
                events.append(current)
            current = []
            continue
        field, _, value = line.partition(":")
        current.append((field, value[1:] if value.startswith(" ") else value))
    assert not current, f"the stream ended inside an event: {current!r}"
    return events


def check_framing(response) -> List[dict]:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers.get("cache-control") == "no-cache"
    decoded = []
    for event in frames(response):
        fields = [field for field, _ in event if field != ""]  # ":" comment lines have an empty field
        assert fields == ["event", "data"], f"expected one event: and one data: line, got {event!r}"
        name, data = event[0][1], event[1][1]
        payload = json.loads(data)
        assert payload["type"] == name, (name, payload["type"])
        assert data == json.dumps(payload, separators=(",", ":"), ensure_ascii=False), "compact JSON"
        decoded.append(payload)
    return decoded


def test_sse_framing_of_the_three_streams(client: Parallel):
    group = client.task_group.create()
    added = client.task_group.add_runs(
        group.task_group_id,
        inputs=[{"input": "framed", "processor": "pro", "task_spec": JSON_SPEC}, {"input": "two", "processor": "lite"}],
    )
    with client.task_group.with_streaming_response.events(group.task_group_id) as response:
        group_events = check_framing(response)
    assert group_events[-1]["type"] == "task_group_status" and group_events[-1]["status"]["is_active"] is False
    with client.task_group.with_streaming_response.get_runs(
        group.task_group_id, include_input=True, include_output=True
    ) as response:
        runs = check_framing(response)
    assert [r["run"]["run_id"] for r in runs] == added.run_ids
    with client.task_run.with_streaming_response.events(added.run_ids[0]) as response:
        run_events = check_framing(response)
    assert run_events[0]["type"] == "task_run.state" and run_events[-1]["type"] == "task_run.state"
    assert any(e["type"].startswith("task_run.progress") for e in run_events)


def test_async_client(server: Server):
    async def main():
        client = AsyncParallel(api_key="test", base_url=server.base_url)
        try:
            run = await client.task_run.create(input={"q": "async"}, processor="core", task_spec=JSON_SPEC)
            result = await client.task_run.result(run.run_id, api_timeout=20)
            check_result(result, JSON_SPEC["output_schema"])
            events = [e async for e in await client.task_run.events(run.run_id)]
            assert [e.type for e in events] == ["task_run.state", "task_run.state"]
            check_output(events[-1].output, JSON_SPEC["output_schema"])

            group = await client.task_group.create(metadata={"mode": "async"})
            added = await client.task_group.add_runs(
                group.task_group_id,
                inputs=[{"input": f"a{i}", "processor": "lite", "metadata": {"mock_delay_ms": 100}} for i in range(3)],
            )
            stream = await client.task_group.events(group.task_group_id)
            group_events = [e async for e in stream]
            for event in group_events:
                check_event(event)
            assert group_events[-1].status.task_run_status_counts == {"completed": 3}
            runs = [e async for e in await client.task_group.get_runs(group.task_group_id, status="completed")]
            assert [r.run.run_id for r in runs] == added.run_ids
            one = await client.task_group.retrieve_run(added.run_ids[1], task_group_id=group.task_group_id)
            assert one.status == "completed"
            parsed = await client.task_run.execute(input="async execute", processor="lite", output="a sentence")
            check_result(parsed, "a sentence")
        finally:
            await client.close()

    asyncio.run(asyncio.wait_for(main(), timeout=30))
