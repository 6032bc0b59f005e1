"""TaskProcessing as a user drives it with nc-py-api 0.30.3 against
taskyard (spec nextcloud-taskprocessing-api.md, sections 3 and 5.1)."""

from __future__ import annotations

import asyncio
import warnings

import pytest
from nc_py_api import AsyncNextcloud, NextcloudException, NextcloudExceptionNotFound

from conftest import API_KEY, BASE, BASE_V1, wait_status


def refused(status, call, *args, **kwargs) -> NextcloudException:
    """Calls `call`, which must raise nc-py-api's exception with `status`."""
    with pytest.raises(NextcloudException) as raised:
        call(*args, **kwargs)
    assert raised.value.status_code == status, raised.value
    return raised.value


def schedule(nc, type_id="core:text2text", custom_id="doc-1", app_id="mytest", **input_slots):
    body = {"input": input_slots or {"input": "hello world"}, "type": type_id, "appId": app_id, "customId": custom_id}
    return nc.ocs("POST", f"{BASE}/schedule", json=body)["task"]


def test_discovery_capabilities_version_and_user(connect_as):
    nc = connect_as("alice")
    assert nc.srv_version["major"] == 32
    assert nc.srv_version["string"] == "32.0.0"
    assert "core" in nc.capabilities
    assert nc.user == "alice"
    assert nc.perform_login()


def test_task_types_list_the_served_types(connect_as):
    types = connect_as("alice").ocs("GET", f"{BASE}/tasktypes")["types"]
    assert sorted(types) == ["core:text2text", "core:text2text:summary", "core:text2text:translate"]
    text = types["core:text2text"]
    assert text["inputShape"]["input"]["type"] == "Text"
    assert text["outputShape"]["output"]["type"] == "Text"
    assert text["optionalInputShape"] == {}
    translate = types["core:text2text:translate"]
    assert [choice["value"] for choice in translate["inputShapeEnumValues"]["target_language"]] == ["en", "de"]
    assert translate["inputShapeDefaults"] == {"origin_language": "detect_language"}


def test_a_task_is_scheduled_polled_to_success_and_listed(connect_as):
    nc = connect_as("alice")
    task = schedule(nc, custom_id="sdk-1")
    assert isinstance(task["id"], int)
    assert task["status"] == "STATUS_SCHEDULED"
    assert task["userId"] == "alice"
    assert task["input"] == {"input": "hello world"}
    assert task["output"] is None
    done = wait_status(nc, task["id"], "STATUS_SUCCESSFUL")
    assert isinstance(done["output"]["output"], str) and done["output"]["output"]
    assert done["progress"] == 1.0
    assert done["id"] == task["id"]
    # Via v1 the same task reads the same.
    assert nc.ocs("GET", f"{BASE_V1}/task/{task['id']}")["task"] == done
    by_custom = nc.ocs("GET", f"{BASE}/tasks", params={"customId": "sdk-1"})["tasks"]
    assert [t["id"] for t in by_custom] == [task["id"]]
    by_type = nc.ocs("GET", f"{BASE}/tasks", params={"taskType": "core:text2text", "customId": "sdk-1"})["tasks"]
    assert [t["id"] for t in by_type] == [task["id"]]
    by_app = nc.ocs("GET", f"{BASE}/tasks/app/mytest", params={"customId": "sdk-1"})["tasks"]
    assert [t["id"] for t in by_app] == [task["id"]]
    assert nc.ocs("GET", f"{BASE}/tasks/app/nobody")["tasks"] == []
    # Another user does not see it.
    refused(404, connect_as("bob").ocs, "GET", f"{BASE}/task/{task['id']}")


def test_translate_fills_the_enum_default_and_refuses_a_bad_value(connect_as):
    nc = connect_as("dora")
    task = schedule(nc, "core:text2text:translate", input="Hallo", target_language="en", unknown="dropped")
    assert task["input"] == {"input": "Hallo", "origin_language": "detect_language", "target_language": "en"}
    error = refused(400, schedule, nc, "core:text2text:translate", input="Hallo", target_language="xx")
    assert "Wrong value given for Enum slot" in error.response.json()["ocs"]["data"]["message"]


def test_errors_map_to_the_clients_exceptions(connect_as, server):
    nc = connect_as("erin")
    error = refused(412, schedule, nc, "core:text2image")
    assert error.response.json()["ocs"]["data"]["message"] == "The given provider is not available"
    # A missing required parameter is PHP's TypeError: 500 (996).
    refused(500, nc.ocs, "POST", f"{BASE}/schedule", json={"input": {"input": "x"}, "type": "core:text2text"})
    # Not found: v2 through the HTTP status, v1 through meta.
    refused(404, nc.ocs, "GET", f"{BASE}/task/999999")
    with pytest.raises(NextcloudExceptionNotFound):
        nc.ocs("GET", f"{BASE_V1}/task/999999")
    # An unknown path: 998.
    with pytest.raises(NextcloudExceptionNotFound):
        nc.ocs("GET", f"{BASE_V1}/no/such/route")
    refused(404, nc.ocs, "GET", f"{BASE}/no/such/route")
    # No file slots: the file route finds nothing.
    task = schedule(nc)
    refused(404, nc.ocs, "GET", f"{BASE}/tasks/{task['id']}/file/1")
    # ExApp routes are refused in phase 1.
    refused(412, nc.ocs, "GET", f"{BASE}/tasks_provider/next")


def test_a_bad_password_and_no_credentials_are_401(connect_as):
    refused(401, connect_as("alice", "not-the-key").ocs, "GET", f"{BASE}/tasktypes")
    # nc-py-api given no user sends the empty Basic `Og==`.
    refused(401, connect_as("", "").ocs, "GET", f"{BASE}/tasktypes")


def test_cancel_twice_and_delete_twice(connect_as):
    nc = connect_as("frank")
    task = schedule(nc, "core:text2text:summary", input="a long text")
    wait_status(nc, task["id"], "STATUS_RUNNING")
    for _ in range(2):
        cancelled = nc.ocs("POST", f"{BASE}/tasks/{task['id']}/cancel")["task"]
        assert cancelled["status"] == "STATUS_CANCELLED"
    for _ in range(2):
        assert nc.ocs("DELETE", f"{BASE}/task/{task['id']}") is None
    refused(404, nc.ocs, "GET", f"{BASE}/task/{task['id']}")
    refused(404, nc.ocs, "POST", f"{BASE}/tasks/{task['id']}/cancel")


def test_the_21st_schedule_in_the_window_is_429(connect_as):
    nc = connect_as("grace")
    for _ in range(20):
        schedule(nc, custom_id="burst")
    refused(429, schedule, nc, custom_id="burst")
    # Reads are not limited, nor are other users.
    assert len(nc.ocs("GET", f"{BASE}/tasks", params={"customId": "burst"})["tasks"]) == 20
    schedule(connect_as("heidi"))


def test_the_async_client_works_the_same(server):
    async def scenario():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nc = AsyncNextcloud(nextcloud_url=server.base_url, nc_auth_user="ivan", nc_auth_pass=API_KEY)
        body = {"input": {"input": "async"}, "type": "core:text2text", "appId": "mytest"}
        task = (await nc.ocs("POST", f"{BASE}/schedule", json=body))["task"]
        assert task["customId"] == ""
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            read = (await nc.ocs("GET", f"{BASE}/task/{task['id']}"))["task"]
            if read["status"] == "STATUS_SUCCESSFUL":
                return read
            assert asyncio.get_running_loop().time() < deadline, f"task still {read['status']}"
            await asyncio.sleep(0.05)

    done = asyncio.run(scenario())
    assert done["output"]["output"]
