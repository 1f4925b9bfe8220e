"""benchmarks/exported_server.py, the GPU benchmark's server: mlcp's serving tier on a
torch.export archive alone, answering as the model does, without importing the control
plane, MLflow, Feast, GX or SQLAlchemy (a bare GPU machine has none of them)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch

from tests.controlplane.api.servers import free_port

pytestmark = pytest.mark.e2e
SERVER = Path(__file__).resolve().parents[2] / "benchmarks" / "exported_server.py"


def test_serves_an_archive_without_the_control_plane(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    x = torch.rand(3, 4)
    program = torch.export.export(net.eval(), (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(program, str(tmp_path / "model.pt2"))
    port, log = free_port(), tmp_path / "server.log"
    argv = [sys.executable, str(SERVER), "--model", str(tmp_path / "model.pt2"), "--features",
            "4", "--port", str(port), "--device", "cpu"]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with log.open("w") as sink, subprocess.Popen(argv, stdout=sink, stderr=sink) as proc:
        try:
            deadline = time.monotonic() + 60
            while '{"ready"' not in log.read_text():  # said once the version is warmed up
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            body = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32",
                                "data": x.flatten().tolist()}]}  # fmt: skip
            answer = httpx.post(f"{base}/v2/models/bench/infer", json=body, timeout=30)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    assert answer.status_code == 200, answer.text
    with torch.inference_mode():
        expected = net(x).flatten().tolist()
    assert answer.json()["outputs"][0]["data"] == pytest.approx(expected, abs=1e-6)
    ready = next(line for line in log.read_text().splitlines() if line.startswith('{"ready"'))
    assert json.loads(ready)["control_plane_imports"] == []
