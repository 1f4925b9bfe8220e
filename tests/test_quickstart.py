"""The README's quickstart, word for word, with a data set of this test's own making.

The blocks that follow a ``<!-- quickstart: ... -->`` comment are taken from the README as they
are: ``file NAME`` blocks are written to NAME, ``run`` blocks are run in order by one bash,
in an empty folder holding only this test's data (credit applicants with four features, not
the demo's churn data). The only change is the ports: 8080 and 8000 become free ones.
Checked afterwards from the stores, not from printed text: my_model@1 promoted through its
gates, serving answered from the pinned features, my_model@2's canary rolled back and audited.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.controlplane.api.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
_TAG = re.compile(
    r"<!-- quickstart: (file (?P<file>\S+)|run) -->\n```[a-z]*\n(?P<body>.*?)```", re.S
)


def quickstart_blocks(readme: str) -> list[tuple[str | None, str]]:
    """(file name or None for a block to run, its text), in the README's order."""
    return [(m.group("file"), m.group("body")) for m in _TAG.finditer(readme)]


def applicants(folder: Path, seed: int = 11) -> None:
    """customers.parquet, labels.parquet and holdout.parquet as the quickstart describes them:
    credit applicants whose default depends on their debt and late payments."""
    rng = np.random.default_rng(seed)
    n = 500
    ids = np.arange(1, n + 1, dtype=np.int64)
    features = pd.DataFrame(
        {
            "customer_id": ids,
            "event_timestamp": pd.Timestamp("2025-03-01", tz="UTC"),
            "income_k": rng.lognormal(3.6, 0.5, n).astype(np.float32),
            "debt_ratio": rng.beta(2, 3, n).astype(np.float32),
            "late_payments": rng.poisson(1.0, n).astype(np.float32),
            "years_employed": rng.gamma(2.0, 3.0, n).astype(np.float32),
        }
    )
    logit = (
        3.5 * features["debt_ratio"] + 0.8 * features["late_payments"]
        - 0.1 * features["years_employed"] - 1.5
    )  # fmt: skip
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    labels = pd.DataFrame(
        {"customer_id": ids, "event_timestamp": pd.Timestamp("2025-04-01", tz="UTC"),
         "label": label}
    )  # fmt: skip
    features.to_parquet(folder / "customers.parquet", index=False)
    labels.iloc[:350].to_parquet(folder / "labels.parquet", index=False)
    labels.iloc[350:].to_parquet(folder / "holdout.parquet", index=False)


def test_the_quickstart_works_word_for_word(tmp_path: Path) -> None:
    blocks = quickstart_blocks((ROOT / "README.md").read_text())
    files = [name for name, _ in blocks if name]
    assert files == ["my_features.py", "train.py", "policy.yaml"]
    applicants(tmp_path)
    ports = {"8080": str(free_port()), "8000": str(free_port())}
    script = ["set -euo pipefail"]
    for name, body in blocks:
        if name:
            (tmp_path / name).write_text(body)
        else:
            script.append(re.sub(r"\b(8080|8000)\b", lambda m: ports[m.group(1)], body))
    (tmp_path / "quickstart.sh").write_text("\n".join(script))

    venv_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCP_")}
    env |= {"PATH": f"{venv_bin}:{env.get('PATH', '')}", "MLCP_ACTOR": "quickstart"}
    log = tmp_path / "quickstart.log"  # a file, not a pipe: the servers it starts hold it open
    with log.open("w") as sink:
        proc = subprocess.Popen(["bash", "quickstart.sh"], cwd=tmp_path, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            proc.wait(timeout=900)
        finally:
            # The API and the replica the quickstart left running in the background.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    out = log.read_text()
    assert proc.returncode == 0, out[-4000:]

    promotion = json.loads((tmp_path / "promotion.json").read_text())
    assert promotion["outcome"] == "promoted", promotion
    # curl's answer has no newline of its own: read one JSON value where it starts.
    predicted, _ = json.JSONDecoder().raw_decode(out, out.index('{"model_name"'))
    assert predicted["versions"] == [1, 1]
    assert all(0.0 <= p <= 1.0 for p in predicted["predictions"])
    assert predicted["feature_service"] == "customer_features@1"

    from controlplane import audit
    from controlplane.context import ControlPlane

    with ControlPlane.open(home=tmp_path / ".mlcp") as cp:
        assert cp.registry.get("my_model@1").state == "production"
        assert cp.registry.get("my_model@2").state == "rolled_back"
        with cp.sessions() as session:
            [rollback] = audit.entries(session, subject="my_model@2", action="model.rollback")
            assert rollback.reason == "checking the rollback path"
            promoted = audit.entries(session, subject="my_model@1", action="model.promote")
            assert promoted[0].actor == "token:ci"  # promoted from "CI", through the API
            assert audit.verify(session).ok
