"""A worker's webhook with the official `handinger` SDK 0.18.0 (spec 4.6),
strict mode: set, read, regenerate, list executions and clear, with a
receiver on loopback that records what taskyard delivers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from handinger import BadRequestError, Handinger, NotFoundError

from conftest import wait_until


class Receiver:
    """Records every POST (token header and JSON body); answers 500 to the
    first `refuse` requests, then 204."""

    def __init__(self, refuse: int) -> None:
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    receiver.requests.append(
                        {"token": self.headers.get("x-handinger-token"), "body": json.loads(body)}
                    )
                    answer = 500 if len(receiver.requests) <= refuse else 204
                self.send_response(answer)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seen(self) -> list[dict]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    receiver = Receiver(refuse=1)
    yield receiver
    receiver.close()


def test_a_workers_turns_are_delivered_and_every_attempt_listed(client: Handinger, receiver: Receiver):
    worker = client.workers.create(instructions="Answer in one word.")
    empty = client.workers.webhooks.retrieve(worker.id)
    assert empty.url is None and empty.token is None

    webhook = client.workers.webhooks.update(worker.id, url=receiver.url)
    assert webhook.url == receiver.url
    assert webhook.token
    assert client.workers.webhooks.retrieve(worker.id).token == webhook.token

    turn = client.tasks.create(input="Capital of France?", worker_id=worker.id)
    # Refused once (500), taken on the retry.
    wait_until("two delivery attempts", lambda: len(receiver.seen()) >= 2)
    for request in receiver.seen():
        assert request["token"] == webhook.token
        assert request["body"]["task"]["id"] == turn.taskId
        assert request["body"]["turns"][0]["status"] == "completed"

    executions = wait_until(
        "both attempts listed",
        lambda: (lambda page: page if page.total_count == 2 else None)(
            client.workers.webhooks.list_executions(worker.id)
        ),
    )
    assert executions.page == 1 and executions.page_count == 1
    newest, oldest = executions.logs
    assert (newest.request_status, newest.response_status) == ("success", 204)
    assert (oldest.request_status, oldest.response_status) == ("error", 500)
    assert oldest.error_message and "500" in oldest.error_message
    assert newest.task_id == turn.taskId and newest.worker_id == worker.id
    assert newest.task_title == "Capital of France?"
    assert newest.url == receiver.url
    assert newest.created_at >= oldest.created_at
    assert client.workers.webhooks.list_executions(worker.id, page=2).logs == []

    renewed = client.workers.webhooks.regenerate_token(worker.id)
    assert renewed.url == receiver.url and renewed.token != webhook.token
    client.tasks.create(input="And of Spain?", task_id=turn.taskId)
    wait_until("the second turn delivered", lambda: len(receiver.seen()) >= 3)
    assert receiver.seen()[-1]["token"] == renewed.token

    cleared = client.workers.webhooks.delete(worker.id)
    assert cleared.url is None and cleared.token is None
    assert client.workers.webhooks.update(worker.id, url=None).url is None


def test_sdk_errors_for_bad_webhook_urls_and_unknown_workers(client: Handinger):
    worker = client.workers.create(instructions="x")
    with pytest.raises(BadRequestError, match="http to this machine"):
        client.workers.webhooks.update(worker.id, url="http://example.com/hook")
    with pytest.raises(BadRequestError, match="http\\(s\\)"):
        client.workers.webhooks.update(worker.id, url="ftp://example.com/hook")
    with pytest.raises(NotFoundError):
        client.workers.webhooks.retrieve("wrk_nobody")
    with pytest.raises(NotFoundError):
        client.workers.webhooks.list_executions("wrk_nobody")
