"""A `taskyard serve` child process on a free port, for the Python suites
(tests/sdk, tests/handinger_sdk, tests/nextcloud_sdk), and a wait on a
condition with a deadline. No SDK is imported here, so that each suite's
virtual environment needs only its own SDK."""

from __future__ import annotations

import os
import pathlib
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Callable, Optional, TypeVar

ROOT = pathlib.Path(__file__).resolve().parents[2]

#: Every wait of the suite ends by this deadline at the latest.
WAIT_S = 20.0

T = TypeVar("T")


def wait_until(what: str, check: "Callable[[], T]", deadline_s: float = WAIT_S, every_s: Optional[float] = None) -> T:
    """Polls `check` until it answers something truthy, at most
    `deadline_s`: every `every_s`, or from 10 ms doubling up to 200 ms."""
    deadline = time.monotonic() + deadline_s
    pause = every_s or 0.01
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(pause)
        if every_s is None:
            pause = min(pause * 2, 0.2)


LISTENING = re.compile(r"^taskyard (\S+) listening on http://(127\.0\.0\.1):(\d+) \(database (.*)\)$")


def binary() -> str:
    path = os.environ.get("TASKYARD_BIN") or str(ROOT / "target" / "debug" / "taskyard")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"taskyard binary not found at {path}; run `cargo build` or set TASKYARD_BIN")
    return path


class Server:
    """One `taskyard serve` child process on a free port."""

    def __init__(self, *extra_args: str, db: Optional[str] = None) -> None:
        """Starts a server on a new temporary database, or on `db`."""
        self.dir = tempfile.mkdtemp(prefix="taskyard-sdk-")
        self.db = db or os.path.join(self.dir, "t.db")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [
                binary(),
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--db",
                self.db,
                "--shutdown-grace-s",
                "2",
                *extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        lines: "queue.Queue[bytes]" = queue.Queue()
        assert self.proc.stdout is not None
        stdout = self.proc.stdout

        def pump() -> None:
            for line in iter(stdout.readline, b""):
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        try:
            line = lines.get(timeout=WAIT_S).decode().rstrip("\n")
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"taskyard printed no listening line within {WAIT_S} s: {self.stderr()}")
        match = LISTENING.match(line)
        if not match:
            self.stop()
            raise RuntimeError(f"unexpected first line from taskyard: {line!r}; stderr: {self.stderr()}")
        self.version = match.group(1)
        self.port = int(match.group(3))
        self.base_url = f"http://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        with open(self.stderr_path, "rb") as handle:
            return handle.read().decode(errors="replace")

    def stop(self) -> Optional[int]:
        """SIGTERM, then SIGKILL if it has not exited within the deadline."""
        code: Optional[int] = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                code = None
        else:
            code = self.proc.returncode
        self._stderr.close()
        return code

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def stop_cleanly(self) -> None:
        """Stops the server and removes its files; fails unless it exited
        0 on SIGTERM and never panicked."""
        code = self.stop()
        log = self.stderr()
        self.cleanup()
        assert code == 0, f"taskyard did not exit cleanly on SIGTERM (exit {code}); stderr:\n{log}"
        assert "panicked" not in log, f"taskyard panicked:\n{log}"


def with_config(config: str, *extra_args: str) -> Server:
    """A server started with `--config` on a file holding `config`."""
    path = os.path.join(tempfile.mkdtemp(prefix="taskyard-config-"), "taskyard.toml")
    with open(path, "w") as handle:
        handle.write(config)
    return Server("--config", path, *extra_args)
