"""`mlcp api` as an operator starts it: a real uvicorn on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

MLCP = str(Path(sys.executable).parent / "mlcp")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def api_server(env: dict[str, str], log: Path) -> Iterator[str]:
    """Run ``mlcp api`` with ``env`` until the block ends; yields its base URL."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    with (
        log.open("w") as sink,
        subprocess.Popen(
            [MLCP, "api", "--port", str(port)], env=env, stdout=sink, stderr=sink
        ) as proc,
    ):
        try:
            while True:  # poll until the server answers, within a deadline
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "mlcp api did not answer within 60 s"
                time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=20)
