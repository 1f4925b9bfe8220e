"""``mlcp shadow`` and ``mlcp serving windows`` as a user meets them, and the API's shadow
route: exit codes, one-line errors, --json."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from controlplane.api.app import create_app
from controlplane.cli import main
from controlplane.cli.serve import client_policy, shared_cache
from controlplane.context import ControlPlane
from controlplane.policy import Policy
from controlplane.serving import DbWindowSink
from features import reference_statistics
from registry import RegistrationRequest
from serving.config import RateLimit
from serving.windows import LATENCY_EDGES_S, Window
from tests.conftest import make_net


@pytest.fixture
def served(cp: ControlPlane, model_name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Two versions of ``model_name``, v1 the champion; the CLI sees the same stores as ``cp``."""
    s = cp.settings
    monkeypatch.setenv("MLCP_HOME", str(s.home))
    monkeypatch.setenv("MLCP_MLFLOW_TRACKING_URI", s.mlflow_tracking_uri)
    monkeypatch.setenv("MLCP_ARTIFACT_ROOT", s.artifact_root)
    monkeypatch.setenv("MLCP_ACTOR", "cli-user")
    x = np.random.default_rng(0).random((8, 4), dtype=np.float32)
    stats = reference_statistics(pd.DataFrame(x, columns=list("abcd")))
    for seed in (1, 2):
        cp.registry.register(
            RegistrationRequest(
                name=model_name, model=make_net(seed), input_example=x, reference_stats=stats
            )
        )
    cp.policies.set(model_name, Policy.from_yaml("gates: {drift_reference: true}"), "admin")
    cp.promotions.promote(f"{model_name}@1", "ci")
    return model_name


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_shadow_on_and_off(capsys, cp: ControlPlane, served: str) -> None:
    code, out, err = run(capsys, "shadow", f"{served}@2", "--reason", "try it", "--json")
    assert code == 0, err
    assert json.loads(out) == {"name": served, "revision": 2, "champion": 1, "challenger": None,
                               "canary_percent": None, "shadow": 2}  # fmt: skip
    assert cp.promotions.snapshot(served).shadow == 2

    code, out, err = run(capsys, "shadow", served, "--off")
    assert code == 0, err
    assert out.strip() == f"{served} has no shadow (revision 3)"
    assert cp.promotions.snapshot(served).shadow is None


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["shadow", "{name}"], "write NAME@VERSION to shadow a version"),
        (["shadow", "{name}@2", "--off"], "with --off give the model's name alone"),
        (["shadow", "{name}@1"], "is the champion; it cannot be its own shadow"),
        (["shadow", "{name}@9"], "has no version 9"),
        (["shadow", "nosuch_model", "--off"], "'nosuch_model' is not registered"),
    ],
)
def test_bad_shadow_requests_exit_2_with_one_line(capsys, served: str, argv, expect) -> None:
    code, _, err = run(capsys, *[a.format(name=served) for a in argv])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("mlcp: error: ")
    assert expect in lines[0]


def test_serving_windows_lists_what_replicas_reported(capsys, cp: ControlPlane, served) -> None:
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def window(k: int, version: int, role: str) -> Window:
        return Window(
            replica="host-a:1", model=served, version=version, role=role,
            started_at=t0 + timedelta(minutes=k), ended_at=t0 + timedelta(minutes=k + 1),
            requests=100, errors=1, rejected=4, latency_sum_s=0.48,
            latency_counts=(96,) + (0,) * len(LATENCY_EDGES_S),
        )  # fmt: skip

    DbWindowSink(cp.sessions).report(
        [window(0, 1, "champion"), window(1, 2, "shadow"), window(2, 1, "champion")]
    )
    code, out, err = run(capsys, "serving", "windows", f"{served}@champion", "--limit", "1")
    assert code == 0, err
    header, row = out.strip().splitlines()
    assert header.split() == ["ENDED_AT", "REPLICA", "VERSION", "ROLE", "REQUESTS", "ERRORS",
                              "REJECTED", "MEAN_MS"]  # fmt: skip
    assert row.split() == ["2026-03-01", "12:03:00Z", "host-a:1", "1", "champion", "100", "1",
                           "4", "5.00"]  # fmt: skip

    code, out, _ = run(capsys, "serving", "windows", served, "--json")
    assert [(w["version"], w["role"]) for w in json.loads(out)] == [
        (1, "champion"), (2, "shadow"), (1, "champion")
    ]  # fmt: skip
    code, out, _ = run(capsys, "serving", "windows", f"{served}@2")
    assert (code, len(out.strip().splitlines())) == (0, 2)
    code, out, _ = run(capsys, "serving", "windows", "quiet_model")
    assert (code, out.strip()) == (0, "no windows reported for quiet_model yet; replicas "
                                       "report them while serving it")  # fmt: skip
    code, _, err = run(capsys, "serving", "windows", "bad name@1")
    assert code == 2
    assert "invalid model reference" in err


# -- API ------------------------------------------------------------------------------------------
@pytest.fixture
def client(cp: ControlPlane) -> Iterator[TestClient]:
    with TestClient(create_app(cp)) as c:
        yield c


def test_shadow_through_the_api(client: TestClient, cp: ControlPlane, served: str) -> None:
    promoter = {"Authorization": f"Bearer {cp.tokens.create('ci', 'promoter', 'test')[1]}"}
    viewer = {"Authorization": f"Bearer {cp.tokens.create('v', 'viewer', 'test')[1]}"}
    url = f"/v1/models/{served}/shadow"

    on = client.post(url, json={"version": 2, "reason": "try it"}, headers=promoter)
    assert on.status_code == 200, on.text
    assert (on.json()["shadow"], on.json()["revision"]) == (2, 2)
    assert client.post(url, json={"version": None}, headers=viewer).status_code == 403
    refused = client.post(url, json={"version": 1}, headers=promoter)
    assert (refused.status_code, refused.json()["error"]["type"]) == (409, "InvalidTransition")
    missing = client.post(url, json={"reason": "no version key"}, headers=promoter)
    assert missing.status_code == 422  # null stops a shadow; leaving it out is a mistake
    off = client.post(url, json={"version": None, "reason": "done"}, headers=promoter)
    assert (off.status_code, off.json()["shadow"]) == (200, None)
    assert cp.promotions.snapshot(served).shadow is None

    windows = client.get(f"/v1/models/{served}/windows?version=1", headers=viewer)
    assert (windows.status_code, windows.json()) == (200, [])


def test_serve_options_become_the_client_policy() -> None:
    policy = client_policy(10, 0, ("ci=2/4", "ip:10.0.0.1=1"), ("ci=Batch",))
    assert policy.rate == RateLimit(10, 0)
    assert policy.rates == {"ci": RateLimit(2, 4), "ip:10.0.0.1": RateLimit(1, 0)}
    assert policy.classes == {"ci": "batch"}
    assert client_policy(0, 0, (), ()).rate is None
    with pytest.raises(ValueError, match="--client-limit"):
        client_policy(0, 0, ("ci=fast",), ())
    with pytest.raises(ValueError, match="critical"):
        client_policy(0, 0, (), ("ci=urgent",))


def test_the_shared_cache_comes_from_the_option_or_else_the_setting() -> None:
    assert shared_cache(None, "", 50) is None  # neither: caches stay local
    from_setting = shared_cache(None, "redis://cache:6379/1", 50)
    assert from_setting is not None
    assert (from_setting.url, from_setting.timeout_ms) == ("redis://cache:6379/1", 50)
    from_option = shared_cache("redis://other:6379", "redis://cache:6379/1", 20)
    assert from_option is not None
    assert from_option.url == "redis://other:6379"
    assert shared_cache("", "redis://cache:6379/1", 50) is None  # the option turns it off
    with pytest.raises(ValueError, match="give redis://"):
        shared_cache("memcached://cache", "", 50)
    with pytest.raises(ValueError, match="give redis://") as refused:
        shared_cache("memcached://user:hunter2@cache", "", 50)
    assert "hunter2" not in str(refused.value)
