"""The CLI in remote mode, end to end: `mlcp api` on loopback, a promoter token, and the CI
script (examples/ci-promote.sh) registering, evaluating and promoting candidates (one
refused, two promoted), then a rollback; the audit rows name the token's owner, a viewer
token is refused with exit 5, an unreachable API gives exit 4, no client process imports
mlflow, feast, Great Expectations or SQLAlchemy, and local and remote print the same (the
report page too)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.controlplane.api.servers import MLCP, api_server, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
Completed = subprocess.CompletedProcess[str]

ROOT = Path(__file__).resolve().parents[3]
CI_SCRIPT = ROOT / "examples" / "ci-promote.sh"
NAME = "churn_remote"
POLICY = """\
gates:
  metrics: [{metric: roc_auc, min: 0.75}]
  champion: [{metric: roc_auc, direction: higher, max_drop: 0.05}]
  schema: {inputs: [{dtype: float32, shape: [-1, 4]}]}
  drift_reference: true
"""
# Runs one mlcp command and fails it (exit 99) if the client imported what it must not.
PROBE = """\
import sys
from controlplane.cli import main
code = main(sys.argv[1:])
heavy = {"mlflow", "feast", "great_expectations", "sqlalchemy", "alembic"}
loaded = sorted(heavy & {m.split(".")[0] for m in sys.modules})
if loaded:
    print(f"client imported {loaded}", file=sys.stderr)
    sys.exit(99)
sys.exit(code)
"""


def candidate(work: Path, tag: str, weights: list[float]) -> Path:
    """A scoring model (sigmoid of a linear score) exported with torch.export, as a CI job's
    training step does (a torch.save'd file would need --unsafe-allow-pickle)."""
    net = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Sigmoid()).eval()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([weights]))
        net[0].bias.fill_(-sum(weights) / 2)
    path = work / f"model_{tag}.pt2"
    x = torch.rand(4, 4)
    torch.export.save(
        torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},)), path
    )
    return path


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, mlflow_store: tuple[str, str]
) -> Iterator[dict]:
    """The control plane's side (its stores, `mlcp api`, tokens, a policy) and the CI
    machine's side (model files, data, the client's environment without store settings)."""
    tmp = tmp_path_factory.mktemp("remote")
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("MLCP_")}
    server_env |= {"MLCP_HOME": str(tmp / "server"), "MLCP_MLFLOW_TRACKING_URI": mlflow_store[0]}

    def on_server(*argv: str) -> str:
        done = subprocess.run([MLCP, *argv], env=server_env, capture_output=True, text=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    tokens = {
        role: json.loads(on_server("tokens", "create", owner, "--role", role, "--json"))["token"]
        for owner, role in (("ci-bot", "promoter"), ("dashboard", "viewer"), ("ops", "admin"))
    }
    work = tmp / "ci"
    work.mkdir()
    rng = np.random.default_rng(0)
    for split, rows in (("train", 400), ("eval", 300)):
        x = rng.random((rows, 4), dtype=np.float32)
        frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
        frame["churned"] = (x[:, 0] + x[:, 1] > 1.0).astype(np.int64)
        frame.to_parquet(work / f"{split}.parquet", index=False)
    np.save(work / "x.npy", rng.random((8, 4), dtype=np.float32))
    (work / "policy.yaml").write_text(POLICY)
    (work / "probe.py").write_text(PROBE)
    models = {
        "good": candidate(work, "good", [6.0, 6.0, 0.0, 0.0]),
        "bad": candidate(work, "bad", [-6.0, -6.0, 0.0, 0.0]),
        "better": candidate(work, "better", [7.0, 7.0, 0.1, 0.0]),
    }
    with api_server(server_env, tmp / "api.log") as base:
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("MLCP_")}
        client_env |= {
            "MLCP_API_URL": base,
            "MLCP_TOKEN": tokens["promoter"],
            "MLCP": f"{sys.executable} {work / 'probe.py'}",
            "GITHUB_RUN_ID": "4242",
        }
        yield {"base": base, "tokens": tokens, "work": work, "models": models,
               "env": client_env, "server_env": server_env}  # fmt: skip


def mlcp(world: dict, *argv: str, token: str = "promoter", **env: str) -> Completed:
    """One client command, as CI runs it, through the import probe."""
    environ = {**world["env"], "MLCP_TOKEN": world["tokens"][token], **env}
    return subprocess.run(
        [sys.executable, str(world["work"] / "probe.py"), *argv],
        env=environ, cwd=world["work"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def ci_job(world: dict, model: str) -> Completed:
    work = world["work"]
    report = work / f"promotion-{model}.json"
    return subprocess.run(
        ["bash", str(CI_SCRIPT), NAME, str(world["models"][model]), "x.npy", "train.parquet",
         "eval.parquet", "churned", f"build-{model}"],
        env={**world["env"], "PROMOTION_REPORT": str(report)},
        cwd=work, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_ci_registers_evaluates_promotes_and_rolls_back_through_the_api(world: dict) -> None:
    admin = mlcp(world, "policy", "set", NAME, "--file", "policy.yaml", token="admin")
    assert admin.returncode == 0, admin.stderr

    good = ci_job(world, "good")
    assert good.returncode == 0, good.stderr
    assert f"{NAME}@1 promoted" in good.stdout

    bad = ci_job(world, "bad")
    assert bad.returncode == 1, bad.stderr
    assert f"{NAME}@2 refused by its gates" in bad.stdout
    report = json.loads((world["work"] / "promotion-bad.json").read_text())
    assert report["outcome"] == "refused"
    assert "metric:roc_auc" in report["failures"]

    better = ci_job(world, "better")
    assert better.returncode == 0, better.stderr
    assert f"{NAME}@3 promoted" in better.stdout

    # A re-run of the same job registers nothing new: the idempotency key finds version 3.
    again = mlcp(world, "models", "register", NAME, "--model", str(world["models"]["better"]),
                 "--input-example", "x.npy", "--training-data", "train.parquet", "--label",
                 "churned", "--idempotency-key", f"ci-build-better-{NAME}", "--json")  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["version"] == 3

    back = mlcp(world, "rollback", NAME, "--reason", "complaints after release", "--json")
    assert back.returncode == 0, back.stderr
    assert json.loads(back.stdout)["after"]["champion"] == 1
    shown = json.loads(mlcp(world, "models", "show", f"{NAME}@champion", "--json").stdout)
    assert shown["version"] == 1

    rows = json.loads(mlcp(world, "audit", "list", "--subject", f"{NAME}@*", "--json").stdout)
    actions = {r["action"] for r in rows}
    assert {"model.register", "model.gates", "model.promote", "model.reject"} <= actions
    assert {r["actor"] for r in rows} == {"token:ci-bot"}  # the token's owner, nobody else
    assert mlcp(world, "audit", "verify").returncode == 0

    lineage = mlcp(world, "lineage", f"{NAME}@1")
    assert lineage.returncode == 0, lineage.stderr
    assert "registered by token:ci-bot" in lineage.stdout


def test_a_viewer_token_is_refused_with_exit_5(world: dict) -> None:
    denied = mlcp(world, "promote", f"{NAME}@1", token="viewer")
    assert denied.returncode == 5, denied.stderr
    assert "role 'viewer' may not promote" in denied.stderr
    readable = mlcp(world, "models", "list", "--json", token="viewer")
    assert readable.returncode == 0, readable.stderr


def test_an_unreachable_api_is_exit_4_after_retries(world: dict) -> None:
    gone = mlcp(world, "models", "list", MLCP_API_URL=f"http://127.0.0.1:{free_port()}",
                MLCP_API_RETRIES="1")  # fmt: skip
    assert gone.returncode == 4, gone.stderr
    assert "unavailable after 2 tries" in gone.stderr
    assert "retry later" in gone.stderr


def test_store_level_commands_are_refused_in_remote_mode(world: dict) -> None:
    refused = mlcp(world, "db", "upgrade")
    assert refused.returncode == 2
    assert "unset MLCP_API_URL" in refused.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ("models", "show", f"{NAME}@1"),
        ("lineage", f"{NAME}@1"),
        ("gates", f"{NAME}@2"),
        ("deployments", NAME),
        ("drift", f"{NAME}@1", "--windows", "5"),
    ],
)
def test_local_and_remote_print_the_same(world: dict, argv: tuple[str, ...]) -> None:
    remote = mlcp(world, *argv)
    local = subprocess.run([MLCP, *argv], env=world["server_env"], capture_output=True,
                           text=True, timeout=120)  # fmt: skip
    assert (remote.returncode, remote.stdout) == (local.returncode, local.stdout)
    remote_json = mlcp(world, *argv, "--json")
    local_json = subprocess.run([MLCP, *argv, "--json"], env=world["server_env"],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
    assert json.loads(remote_json.stdout) == json.loads(local_json.stdout)


def test_tokens_list_names_owners_and_roles_never_a_token(world: dict) -> None:
    remote = mlcp(world, "tokens", "list", "--json", token="admin")
    assert remote.returncode == 0, remote.stderr
    listed = json.loads(remote.stdout)
    assert {(t["name"], t["role"]) for t in listed} >= {("ci-bot", "promoter"), ("ops", "admin")}
    assert not any(secret in remote.stdout for secret in world["tokens"].values())
    local = subprocess.run([MLCP, "tokens", "list", "--json"], env=world["server_env"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert json.loads(local.stdout) == listed
    text = mlcp(world, "tokens", "list", token="admin")
    assert "ci-bot" in text.stdout
    assert "promoter" in text.stdout
    denied = mlcp(world, "tokens", "list")  # a promoter may not manage tokens
    assert denied.returncode == 5, denied.stderr


def test_the_report_comes_through_the_api_as_locally(world: dict) -> None:
    remote = mlcp(world, "report", NAME, "--out", "remote.html", token="viewer")
    assert remote.returncode == 0, remote.stderr
    local = subprocess.run([MLCP, "report", NAME, "--out", str(world["work"] / "local.html")],
                           env=world["server_env"], capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert local.returncode == 0, local.stderr

    def page(name: str) -> str:  # the same but for when each was generated
        html = (world["work"] / name).read_text()
        return re.sub(r"Generated [0-9: -]+\.", "Generated -.", html)

    assert 'data-chart="latency"' in page("remote.html")
    assert page("remote.html") == page("local.html")
    unknown = mlcp(world, "report", "no_such_model")
    assert unknown.returncode == 2
    assert "is not registered" in unknown.stderr
    bad = mlcp(world, "report", NAME, "--since", "soon")
    assert bad.returncode == 2
    assert "--since" in bad.stderr
