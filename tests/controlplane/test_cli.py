"""The mlcp CLI as a user meets it: exit codes, one-line errors, --json, light start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from controlplane.cli import main
from tests.conftest import make_net
from tests.registry import crafted

MLCP = str(Path(sys.executable).parent / "mlcp")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store: tuple[str, str]) -> Path:
    """Embedded settings through the environment, as a user sets them; returns the work dir."""
    uri, artifacts = mlflow_store
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLCP_HOME", str(tmp_path / ".mlcp"))
    monkeypatch.setenv("MLCP_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLCP_ARTIFACT_ROOT", artifacts)
    monkeypatch.setenv("MLCP_ACTOR", "cli-user")
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def one_line(err: str) -> str:
    """The error itself is one line; progress lines ("… ") may come before it."""
    lines = [line for line in err.strip().splitlines() if not line.startswith("… ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("mlcp: error: ")
    return lines[0]


@pytest.fixture
def files(env: Path) -> dict[str, Path]:
    net = make_net(3)
    x = np.random.default_rng(1).random((5, 4), dtype=np.float32)
    paths = {
        "model": env / "model.pt",
        "example": env / "x.npy",
        "train": env / "train.parquet",
        "state_dict": env / "weights.pt",
        "junk": env / "junk.pt",
    }
    torch.save(net, paths["model"])
    torch.save(net.state_dict(), paths["state_dict"])
    np.save(paths["example"], x)
    pd.DataFrame(x, columns=list("abcd")).assign(label=[0, 1, 0, 1, 1]).to_parquet(paths["train"])
    paths["junk"].write_bytes(b"definitely not a model")
    return paths


def register(capsys, files: dict[str, Path], name: str, *extra: str) -> tuple[int, str, str]:
    return run(
        capsys,
        "models", "register", name,
        "--model", str(files["model"]), "--unsafe-allow-pickle",
        "--input-example", str(files["example"]),
        "--training-data", str(files["train"]),
        "--label", "label",
        "--param", "lr=0.1",
        "--metric", "auc=0.8",
        *extra,
    )  # fmt: skip


def test_help_is_light(env: Path) -> None:
    """--help must not import mlflow, feast, great_expectations or torch."""
    probe = (
        "import sys; from controlplane.cli import main; main(['--help']); "
        "heavy = {'mlflow', 'feast', 'great_expectations', 'torch', 'sqlalchemy'}; "
        "print('LOADED', sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "LOADED []" in out
    assert "models" in out


def test_register_list_show_lineage_round_trip(capsys, files, model_name: str) -> None:
    code, out, err = register(capsys, files, model_name, "--json", "--idempotency-key", "b1")
    assert code == 0, err
    registered = json.loads(out)
    assert registered["ref"] == f"{model_name}@1"
    assert registered["training_data"]["rows"] == 5
    # The model's inputs only, in its order: never the label.
    assert list(registered["reference_stats"]["features"]) == ["a", "b", "c", "d"]
    assert registered["reference_stats"]["inputs"] == ["a", "b", "c", "d"]
    assert registered["prediction_reference"]["source"] == "training"
    assert registered["registered_by"] == "cli-user"
    assert "… registering" in err  # progress goes to stderr

    listed = run_json(capsys, "models", "list", "--name", model_name)
    assert [v["ref"] for v in listed] == [f"{model_name}@1"]
    shown = run_json(capsys, "models", "show", f"{model_name}@1")
    assert shown["artifact_sha256"] == registered["artifact_sha256"]

    graph = run_json(capsys, "lineage", f"{model_name}@1")
    kinds = {n["kind"] for n in graph["nodes"]}
    assert kinds == {"dataset", "run", "model_version", "event"}
    assert {"source": f"run:{registered['run_id']}", "target": f"model_version:{model_name}@1",
            "relation": "produced"} in graph["edges"]  # fmt: skip

    code, out, _ = run(capsys, "lineage", f"{model_name}@1")
    assert code == 0
    assert out.splitlines()[0] == f"{model_name}@1  [registered]"
    assert "├── run" in out
    assert "(no feature service pinned)" in out

    code, out, _ = run(capsys, "models", "show", f"{model_name}@1")
    assert "artifact_sha256" in out

    # the CI retry: same key, same content -> same version, exit 0
    code, out, err = register(capsys, files, model_name, "--json", "--idempotency-key", "b1")
    assert code == 0, err
    assert json.loads(out)["version"] == 1


def test_audit_list_and_verify(capsys, files, model_name: str) -> None:
    assert register(capsys, files, model_name)[0] == 0
    rows = run_json(capsys, "audit", "list", "--subject", f"{model_name}@*")
    assert [r["action"] for r in rows] == ["model.register"]
    assert run_json(capsys, "audit", "verify")["ok"] is True
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 0
    assert out.startswith("ok: 1 rows verified")


def test_audit_verify_exits_1_on_tampering(capsys, files, model_name: str, env: Path) -> None:
    import sqlite3

    assert register(capsys, files, model_name)[0] == 0
    with sqlite3.connect(env / ".mlcp" / "controlplane.db") as db:
        db.execute("DROP TRIGGER mlcp_audit_log_no_update")
        db.execute("UPDATE mlcp_audit_log SET actor = 'mallory' WHERE seq = 1")
    code, _, err = run(capsys, "audit", "verify")
    assert code == 1
    assert "row 1" in one_line(err)
    code, out, _ = run(capsys, "audit", "verify", "--json")
    assert code == 1
    assert json.loads(out)["bad_seq"] == 1


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["models", "show", "nosuch@1"], "mlcp models list"),
        (["models", "show", "nosuch"], "NAME@VERSION"),
        (["lineage", "nosuch@champion"], "not registered"),
        (["models", "list", "--name", "nosuch"], "not registered"),
        (["models", "register", "x"], "Missing option '--model'"),
        (["models", "frobnicate"], "No such command"),
        (["audit", "list", "--limit", "0"], "--limit"),
        # Each once answered exit 3 (int() of "³", an OverflowError from the database).
        (["models", "show", "nosuch@\u00b3"], "not a version number"),
        (["models", "show", "nosuch@9223372036854775808"], "1 to 2147483647"),
        (["lineage", "nosuch@18446744073709551616"], "1 to 2147483647"),
        (["rollback", "nosuch", "--to", "9223372036854775808", "--reason", "r"], "--to"),
        (["tokens", "revoke", "9223372036854775808"], "TOKEN_ID"),
        (["features", "show", "user_stats@\u00b3"], "NAME@VERSION"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, env: Path, argv: list[str], expect: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert expect in one_line(err)


def test_unknown_version_of_known_model(capsys, files, model_name: str) -> None:
    assert register(capsys, files, model_name)[0] == 0
    code, _, err = run(capsys, "models", "show", f"{model_name}@9")
    assert code == 2
    assert "no version 9" in one_line(err)


@pytest.mark.parametrize(
    ("which", "expect"),
    [("junk", "not a torch archive"), ("state_dict", "state_dict"), ("missing", "no such file")],
)
def test_file_that_is_not_a_model_is_refused(capsys, files, model_name, which, expect) -> None:
    files["model"] = files.get(which, files["model"].with_name("missing.pt"))
    code, _, err = register(capsys, files, model_name)
    assert code == 2
    assert expect in one_line(err)
    assert run(capsys, "models", "list", "--name", model_name)[0] == 2  # nothing registered


def test_duplicate_idempotency_key_with_different_content(capsys, files, model_name) -> None:
    assert register(capsys, files, model_name, "--idempotency-key", "k")[0] == 0
    code, _, err = register(capsys, files, model_name, "--idempotency-key", "k", "--param", "lr=9")
    assert code == 2
    assert "different content" in one_line(err)
    assert len(run_json(capsys, "models", "list", "--name", model_name)) == 1


def test_bad_metric_value(capsys, files, model_name) -> None:
    code, _, err = register(capsys, files, model_name, "--metric", "auc=high")
    assert code == 2
    assert "--metric" in one_line(err)


def test_bad_setting_names_the_variable(capsys, env: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLCP_DATABASE_URL", "mysql://nope")
    code, _, err = run(capsys, "models", "list")
    assert code == 2
    assert one_line(err).startswith("mlcp: error: MLCP_DATABASE_URL: ")


def test_unreachable_database(capsys, env: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLCP_DATABASE_URL", "postgresql://mlcp:secret@127.0.0.1:1/cp")
    monkeypatch.setenv("MLCP_DB_CONNECT_TIMEOUT_S", "2")
    code, _, err = run(capsys, "models", "list")
    assert code == 4  # unavailable: retry later
    line = one_line(err)
    assert "cannot connect" in line
    assert "MLCP_DATABASE_URL" in line
    assert "secret" not in line


def test_unreachable_mlflow_store(capsys, files, model_name, monkeypatch) -> None:
    monkeypatch.setenv("MLCP_MLFLOW_TRACKING_URI", "postgresql://postgres@127.0.0.1:1/mlflow")
    monkeypatch.setenv("MLCP_DB_CONNECT_TIMEOUT_S", "2")
    code, _, err = register(capsys, files, model_name)
    assert code == 4
    assert "MLCP_MLFLOW_TRACKING_URI" in one_line(err)
    assert run(capsys, "models", "list", "--name", model_name)[0] == 2


def test_db_commands(capsys, env: Path) -> None:
    info = run_json(capsys, "db", "current")
    assert info["current"] is None
    assert run(capsys, "db", "upgrade")[0] == 0
    info = run_json(capsys, "db", "current")
    assert info["up_to_date"] is True
    assert run(capsys, "db", "downgrade", "base")[0] == 0
    assert run_json(capsys, "db", "current")["current"] is None


def test_console_script_exit_code(env: Path) -> None:
    """The executable exits without the interpreter's teardown (controlplane.cli.run): its
    exit code, stderr and every byte of stdout (a pipe: block-buffered) still get out."""
    done = subprocess.run(
        [MLCP, "models", "show", "nosuch@1"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert one_line(done.stderr).startswith("mlcp: error: model 'nosuch' is not registered")
    done = subprocess.run([MLCP, "settings", "--json"], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["actor"] == "cli-user"


def export(files: dict[str, Path], env: Path) -> Path:
    """The files' model as a torch.export archive, as a training job saves it."""
    x = torch.from_numpy(np.load(files["example"]))
    program = torch.export.export(
        make_net(3).eval(), (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},)
    )
    torch.export.save(program, env / "model.pt2")
    return env / "model.pt2"


def test_an_exported_program_is_stored_as_given_and_loads_with_plain_mlflow(
    capsys, files, model_name: str, env: Path
) -> None:
    """No second export: the stored data/model.pt2 is the file's bytes, in MLflow's own
    pytorch flavor layout, which plain MLflow loads (torch.export.load underneath)."""
    pt2 = export(files, env)
    code, out, err = run(capsys, "models", "register", model_name, "--model", str(pt2),
                         "--input-example", str(files["example"]), "--json")  # fmt: skip
    assert code == 0, err
    version = json.loads(out)
    import mlflow

    uri = os.environ["MLCP_MLFLOW_TRACKING_URI"]
    logged = mlflow.MlflowClient(uri).get_logged_model(
        version["source_uri"].removeprefix("models:/")
    )
    folder = Path(logged.artifact_location.removeprefix("file://"))
    assert (folder / "data" / "model.pt2").read_bytes() == pt2.read_bytes()
    assert {p.name for p in folder.iterdir()} >= {
        "MLmodel", "requirements.txt", "conda.yaml", "python_env.yaml", "input_example.json"
    }  # fmt: skip
    script = (
        "import mlflow, numpy as np, torch, sys;"
        f"mlflow.set_tracking_uri({uri!r});"
        f"m = mlflow.pytorch.load_model('models:/{model_name}/1');"
        f"x = torch.from_numpy(np.load({str(files['example'])!r}));"
        "print(m(x).detach().numpy().tolist())"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    with torch.inference_mode():
        expected = make_net(3).eval()(torch.from_numpy(np.load(files["example"])))
    np.testing.assert_allclose(json.loads(done.stdout), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_settings_command_masks_passwords(capsys, env: Path, monkeypatch) -> None:
    monkeypatch.setenv("MLCP_DATABASE_URL", "postgresql://cp:hunter2@db.internal/mlcp")
    shown = run_json(capsys, "settings")
    assert shown["database_url"] == "postgresql+psycopg://cp:***@db.internal/mlcp"
    code, out, _ = run(capsys, "settings")
    assert code == 0
    assert "hunter2" not in out
    assert "MLCP_ACTOR" in out


IMPORT_PROBE = """\
import json, sys
from controlplane.cli import main
code = main(sys.argv[1:])
loaded = {m.split(".")[0] for m in sys.modules} | {"torch._dynamo"} & set(sys.modules)
print("LOADED", json.dumps(sorted(loaded)), file=sys.stderr)
sys.exit(code)
"""


def test_commands_import_only_what_their_work_needs(files, model_name: str, env: Path) -> None:
    """`python -X importtime` showed where cold commands went: each now loads only its work's
    packages (no Feast without a feature service, no GX without a data-quality gate, no
    scikit-learn for metrics, no torch to move an alias)."""
    probe = env / "probe.py"
    probe.write_text(IMPORT_PROBE)
    (env / "policy.yaml").write_text("gates:\n  metrics: [{metric: accuracy, min: 0}]\n")

    def loaded(*argv: str) -> set[str]:
        done = subprocess.run([sys.executable, str(probe), *argv], capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED"))
        return set(json.loads(line.removeprefix("LOADED ")))

    # torch._dynamo: torch's compiler (~1 s to import) is needed only to export a module;
    # an exported program is stored as given and loaded by registry.pt2_program.
    heavy = {"feast", "great_expectations", "sklearn", "torch._dynamo"}
    pt2 = export(files, env)
    register = loaded("models", "register", model_name, "--model", str(pt2),
                      "--input-example", str(files["example"]),
                      "--training-data", str(files["train"]), "--label", "label")  # fmt: skip
    assert not register & heavy
    evaluate = loaded("evaluate", f"{model_name}@1", "--data", str(files["train"]),
                      "--label", "label")  # fmt: skip
    assert not evaluate & heavy
    pickled = loaded("models", "register", model_name, "--model", str(files["model"]),
                     "--unsafe-allow-pickle", "--input-example", str(files["example"]),
                     "--training-data", str(files["train"]), "--label", "label")  # fmt: skip
    assert not pickled & {"feast", "great_expectations", "sklearn"}
    assert not loaded("policy", "set", model_name, "--file", "policy.yaml") & {"mlflow", "torch"}
    promote = loaded("promote", f"{model_name}@1")
    assert not promote & (heavy | {"torch"})
    assert not loaded("audit", "list") & {"mlflow", "torch", "pandas"}
    assert not loaded("deployments", model_name) & {"mlflow", "torch"}


@pytest.mark.parametrize("kind", sorted(crafted.HOSTILE))
def test_register_refuses_an_archive_that_would_run_code(
    capsys, files, model_name: str, kind: str
) -> None:
    marker = files["model"].with_name("pwned")
    files["model"] = files["model"].with_name("hostile.pt2")
    files["model"].write_bytes(crafted.HOSTILE[kind](crafted.exported_archive(), marker))
    code, _, err = register(capsys, files, model_name)
    assert code == 2
    assert "not plain data" in one_line(err)
    assert not marker.exists()


def test_register_says_one_line_for_a_zip_faked_as_an_export(capsys, files, model_name) -> None:
    files["model"] = files["model"].with_name("fake.pt2")
    crafted.fake_export(files["model"])
    code, _, err = register(capsys, files, model_name)
    assert code == 2
    assert "is not a usable torch model" in one_line(err)  # not torch's 17-line traceback


def test_a_saved_module_needs_the_opt_in_that_says_it_runs_code(capsys, files, model_name) -> None:
    code, _, err = run(capsys, "models", "register", model_name, "--model", str(files["model"]),
                       "--input-example", str(files["example"]))  # fmt: skip
    assert code == 2
    line = one_line(err)
    assert "--unsafe-allow-pickle" in line
    assert "torch.export.save(program" in line
    assert register(capsys, files, model_name)[0] == 0  # register() passes the flag


def test_features_apply_on_a_file_that_exits_is_an_error(capsys, env: Path) -> None:
    (env / "exits.py").write_text("import sys\nsys.exit(0)\n")
    code, _, err = run(capsys, "features", "apply", "--file", str(env / "exits.py"))
    assert code == 2
    assert "it called sys.exit(0) while being loaded" in one_line(err)
