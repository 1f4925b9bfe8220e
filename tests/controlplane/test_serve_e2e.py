"""`mlcp serve` end to end, as a user runs it: after `mlcp demo`, a real server process on
loopback answers from the registry and the feature store, and follows promotions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from controlplane.context import ControlPlane
from controlplane.policy import Policy
from controlplane.serving import serving_windows
from controlplane.settings import Settings
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MLCP = str(Path(sys.executable).with_name("mlcp"))
LENIENT = "gates:\n  metrics:\n    - {metric: roc_auc, min: 0.5}\n"


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("serve-e2e")
    env = {**os.environ, "MLCP_ACTOR": "data-scientist"}
    argv = [MLCP, "demo", "--no-scenes"]
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return work


@pytest.fixture(scope="module")
def cp(demo_dir: Path) -> Iterator[ControlPlane]:
    with ControlPlane(Settings(home=demo_dir / ".mlcp", actor="ci")) as plane:
        yield plane


@pytest.fixture(scope="module")
def server(demo_dir: Path) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [MLCP, "serve", "--port", str(port), "--poll-s", "0.2", "--window-s", "1"]
    log = (demo_dir / "serve.log").open("w")
    process = subprocess.Popen(argv, cwd=demo_dir, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert process.poll() is None, (demo_dir / "serve.log").read_text()[-3000:]
        try:
            return httpx.get(f"{url}/v2/health/ready").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(ready, what="mlcp serve to be ready")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)  # what Kubernetes sends
        code = process.wait(60)
        log.close()
    assert code == 0, (demo_dir / "serve.log").read_text()[-3000:]


def features(cp: ControlPlane, ids: list[int], names: list[str]) -> torch.Tensor:
    rows = cp.features.client().get("churn_features@1", [{"customer_id": i} for i in ids])
    return torch.tensor([[row.values[n] for n in names] for row in rows], dtype=torch.float32)


def test_v2_and_entity_endpoints_answer_like_the_registered_model(
    server: str, cp: ControlPlane
) -> None:
    model = cp.registry.backend.load_version(cp.registry.get("churn@1"))
    with httpx.Client(base_url=server, timeout=30) as client:
        meta = client.get("/v2/models/churn").json()
        names = meta["parameters"]["feature_names"]
        ids = [1, 2, 3, 40]
        x = features(cp, ids, names)
        v2 = client.post(
            "/v2/models/churn/infer",
            json={"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                              "data": x.reshape(-1).tolist()}]},
        )  # fmt: skip
        by_entity = client.post(
            "/v1/models/churn/predict", json={"entities": [{"customer_id": i} for i in ids]}
        )
        unknown = client.post("/v1/models/churn/predict", json={"entities": [{"customer_id": -5}]})
        bad_key = client.post("/v1/models/churn/predict", json={"entities": [{"user_id": 1}]})
    with torch.inference_mode():
        expected = model(x).reshape(-1)
    assert meta["versions"] == ["1"]
    assert v2.status_code == 200, v2.text
    assert torch.allclose(torch.tensor(v2.json()["outputs"][0]["data"]), expected, atol=1e-6)
    assert by_entity.status_code == 200, by_entity.text
    assert by_entity.json()["versions"] == [1, 1, 1, 1]
    assert torch.allclose(torch.tensor(by_entity.json()["predictions"]), expected, atol=1e-6)
    assert unknown.status_code == 422
    assert bad_key.status_code == 400
    assert "customer_id" in bad_key.json()["error"]


def test_promotion_swaps_the_served_version_under_load_without_failing_a_request(
    server: str, cp: ControlPlane
) -> None:
    cp.policies.set("churn", Policy.from_yaml(LENIENT), "ci")
    answers: list[tuple[int, list[int]]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def client_loop(first: int) -> None:
        with httpx.Client(base_url=server, timeout=60) as client:
            while not stop.is_set():
                entities = [{"customer_id": first + k} for k in range(4)]
                try:
                    r = client.post("/v1/models/churn/predict", json={"entities": entities})
                    answers.append((r.status_code, r.json().get("versions", [])))
                except httpx.HTTPError as exc:
                    failures.append(exc)

    workers = [threading.Thread(target=client_loop, args=(k * 10,)) for k in range(4)]
    for worker in workers:
        worker.start()
    try:
        wait_until(lambda: len(answers) >= 50, what="traffic")
        canary = cp.promotions.promote("churn@2", "ci", canary_percent=50)
        assert canary.outcome == "canary", canary.to_dict()
        wait_until(lambda: any(2 in v for _, v in answers[-20:]), what="the canary to answer")
        promoted = cp.promotions.promote("churn@2", "ci")
        assert promoted.outcome == "promoted", promoted.to_dict()
        mark = len(answers)
        wait_until(
            lambda: len(answers) > mark + 50 and all(v == [2] * 4 for _, v in answers[-30:]),
            what="churn@2 to answer everything",
        )
    finally:
        stop.set()
        for worker in workers:
            worker.join(60)
    assert not failures
    assert {code for code, _ in answers} == {200}
    seen = {v for _, versions in answers for v in versions}
    assert seen == {1, 2}


def test_shadow_answers_nobody_and_its_windows_reach_the_database(
    server: str, cp: ControlPlane
) -> None:
    cp.promotions.shadow("churn@1", "ci", reason="compare the old champion on live traffic")
    with httpx.Client(base_url=server, timeout=30) as client:
        wait_until(
            lambda: client.get("/v1/serving/state").json()["deployments"]["churn"]["shadow"] == 1,
            what="the replica to pick the shadow up",
        )
        for i in range(20):
            r = client.post("/v1/models/churn/predict", json={"entities": [{"customer_id": i}]})
            assert r.json()["versions"] == [2]
        metrics = client.get("/metrics").text
    assert 'mlcp_serving_shadow_total{outcome="answered",ref="churn@1"}' in metrics
    windows = wait_until(
        lambda: [w for w in serving_windows(cp.sessions, "churn", 1) if w["role"] == "shadow"],
        what="a shadow window in the database",
    )
    assert sum(w["requests"] for w in windows) >= 1
    assert windows[0]["features"]["tenure_months"]["count"] >= 1


def test_a_tampered_artifact_is_refused_and_the_champion_keeps_answering(
    server: str, cp: ControlPlane
) -> None:
    import io
    import zipfile

    import numpy as np
    from mlflow.utils.file_utils import local_file_uri_to_path

    from controlplane import audit
    from registry import RegistrationRequest
    from registry.mlflow_backend import logged_model_id

    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(5, 1), torch.nn.Sigmoid()).eval()
    x = np.random.default_rng(3).random((8, 5), dtype=np.float32)
    v3 = cp.registry.register(
        RegistrationRequest(
            name="churn", model=net, input_example=x, feature_service="churn_features@1"
        )
    )
    # Overwrite its weights in place in the artifact store, as anyone with write access to the
    # bucket could: the archive stays valid, and plain MLflow would serve the new weights.
    location = cp.registry.backend.client.get_logged_model(logged_model_id(v3.source_uri))
    archive = Path(local_file_uri_to_path(location.artifact_location)) / "data" / "model.pt2"
    with zipfile.ZipFile(archive) as src:
        members = {info: src.read(info) for info in src.infolist()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info, data in members.items():
            if info.filename.endswith("data/weights/weight_0"):
                data = torch.full((len(data) // 4,), 9.0).numpy().tobytes()
            dst.writestr(info, data)
    archive.write_bytes(out.getvalue())

    cp.policies.set("churn", Policy.from_yaml("gates: {none: true}"), "ci")
    assert cp.promotions.promote(v3.ref, "ci").outcome == "promoted"
    with httpx.Client(base_url=server, timeout=30) as client:
        failures = wait_until(
            lambda: client.get("/v1/serving/state").json()["failures"].get(v3.ref),
            what="the replica to refuse churn@3",
        )
        answers = [
            client.post("/v1/models/churn/predict", json={"entities": [{"customer_id": i}]})
            for i in range(10)
        ]
    assert "recorded at registration" in failures
    assert "changed after the gates passed" in failures
    assert [(a.status_code, a.json()["versions"]) for a in answers] == [(200, [2])] * 10
    with cp.sessions() as session:
        refused = audit.entries(session, subject=v3.ref, action="model.artifact_refused")
    assert refused
    assert refused[0].evidence["recorded_sha256"] == v3.artifact_sha256
    assert refused[0].evidence["stored_sha256"] != v3.artifact_sha256
