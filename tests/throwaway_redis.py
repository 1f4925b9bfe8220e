"""A redis-server of a test's own, on a free port in a temporary folder: fault tests stop and
start it, never the machine's shared Redis."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis

from tests.serving.conftest import free_port
from tests.waiting import wait_until


class ThrowawayRedis:
    """Started by `start`; with ``keep_data`` its data outlives a restart (AOF)."""

    def __init__(self, keep_data: bool = False) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("needs redis-server")
        self.keep_data = keep_data
        self.dir = Path(tempfile.mkdtemp(prefix="mlcp-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        appendonly = "yes" if self.keep_data else "no"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", appendonly, "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        wait_until(lambda: _pings(client), 30, "redis-server to start")
        client.close()

    def stop(self) -> None:
        assert self.process is not None, "never started"
        self.process.terminate()  # ours, by its pid
        self.process.wait(30)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
