from __future__ import annotations

from pathlib import Path

import pytest

from controlplane import audit
from controlplane.context import ControlPlane
from controlplane.errors import InvalidPolicy, NoPolicy
from controlplane.policy import Policy

FULL = """
gates:
  metrics: [{metric: auc, min: 0.7}, {metric: log_loss, max: 0.6}]
  champion: [{metric: auc, direction: higher, max_drop: 0.01}]
  data_quality:
    datasets: [evaluation]
    expectations:
      - {type: expect_column_values_to_not_be_null, kwargs: {column: a}}
      - type: expect_column_values_to_be_between
        kwargs: {column: b, min_value: 0}
        severity: warning
  schema: {inputs: [{dtype: float32, shape: [-1, 4]}]}
  latency: {batch_sizes: [1, 8], p99_ms: 50}
  drift_reference: true
approval: {required: true}
canary: {steps: [5, 25, 50], interval_s: 30, failure_limit: 1}
slo: {p99_ms: 100, max_error_rate: 0.01, breach_windows: 2}
rollback: {max_per_hour: 2}
drift: {psi_max: 0.2}
"""


def test_full_policy_builds_every_gate() -> None:
    policy = Policy.from_yaml(FULL)
    names = [g.name for g in policy.build_gates()]
    assert names == [
        "metric:auc",
        "metric:log_loss",
        "champion:auc",
        "data_quality",
        "schema",
        "latency",
        "drift_reference",
    ]
    assert policy.approval.required
    assert policy.canary.steps == (5, 25, 50)
    assert (policy.canary.interval_s, policy.canary.failure_limit) == (30, 1)
    assert (policy.slo.breach_windows, policy.rollback.max_per_hour) == (2, 2)


def test_policies_stored_before_canary_steps_still_load() -> None:
    legacy = {"canary": {"percent": 10, "min_requests": 500, "analysis_windows": 3}}
    canary = Policy.from_dict(legacy).canary
    assert (canary.steps, canary.min_requests, canary.success_windows) == ((10,), 500, 3)


def test_empty_policy_is_valid_and_has_no_gates() -> None:
    assert Policy.from_yaml("").build_gates() == []


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("gates:\n  metrics: [{metric: auc, mni: 0.7}]\n", "gates.metrics[0].mni"),
        ("gates:\n  metrics: [{metric: auc, min: high}]\n", "gates.metrics[0].min"),
        ("gates:\n  metrics: [{metric: auc}]\n", "gates.metrics[0]"),
        ("gates:\n  latency: {p99_ms: -1}\n", "gates.latency.p99_ms"),
        ("canary: {steps: [10, 100]}\n", "canary: Value error, steps are percentages"),
        ("canary: {steps: [50, 10]}\n", "steps must increase"),
        ("slo: {breach_windows: 0}\n", "slo.breach_windows"),
        ("approvals: {required: true}\n", "approvals"),
        ("gates:\n  data_quality: {expectations: [{type: not_an_expectation}]}\n", "type"),
    ],
)
def test_bad_key_or_value_is_named(text: str, where: str) -> None:
    with pytest.raises(InvalidPolicy) as err:
        Policy.from_yaml(text, source="p.yaml")
    assert str(err.value).startswith("p.yaml: ")
    assert where in str(err.value)


@pytest.mark.parametrize("text", ["gates: [unclosed", "- just\n- a list\n"])
def test_not_a_mapping_or_not_yaml(text: str) -> None:
    with pytest.raises(InvalidPolicy, match=r"p\.yaml"):
        Policy.from_yaml(text, source="p.yaml")


def test_store_revisions_and_audit(cp: ControlPlane, model_name: str) -> None:
    with pytest.raises(NoPolicy, match="mlcp policy set"):
        cp.policies.current(model_name)
    required = Policy.from_yaml("approval: {required: true}\ngates: {none: true}")
    first = cp.policies.set(model_name, required, "alice")
    again = "gates:\n  none: true\napproval:\n  required: true\n"
    same = cp.policies.set(model_name, Policy.from_yaml(again), "bob")
    assert (first.revision, same.revision) == (1, 1)
    second = cp.policies.set(model_name, Policy.from_yaml(FULL), "alice")
    assert second.revision == 2
    assert cp.policies.current(model_name).sha256 == second.sha256
    with cp.sessions() as session:
        rows = audit.entries(session, subject=model_name, action="policy.set")
    assert [r.after["revision"] for r in rows if r.after] == [2, 1]


def test_cli_policy_set_and_show(cp: ControlPlane, tmp_path: Path, capsys, monkeypatch) -> None:
    from controlplane.cli import main

    monkeypatch.setenv("MLCP_HOME", str(cp.settings.home))
    monkeypatch.setenv("MLCP_MLFLOW_TRACKING_URI", cp.settings.mlflow_tracking_uri)
    (tmp_path / "p.yaml").write_text(FULL)
    (tmp_path / "bad.yaml").write_text("gates:\n  metrics: [{metric: auc, min: x}]\n")
    assert main(["policy", "set", "churn", "--file", str(tmp_path / "p.yaml")]) == 0
    assert "policy revision 1" in capsys.readouterr().out
    assert main(["policy", "show", "churn"]) == 0
    assert "drift_reference: true" in capsys.readouterr().out
    assert main(["policy", "set", "churn", "--file", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    where = f"{tmp_path / 'bad.yaml'}: gates.metrics[0].min"
    assert err == [f"mlcp: error: {where}: Input should be a valid number, unable to parse string "
                   "as a number"]  # fmt: skip
    assert main(["policy", "show", "nosuch"]) == 2


@pytest.mark.parametrize("threshold", [".nan", ".inf", "-.inf"])
def test_thresholds_must_be_finite(threshold: str) -> None:
    # A NaN floor compares false both ways: it would pass every model.
    with pytest.raises(InvalidPolicy, match=r"metrics\[0\]\.min: Input should be a finite"):
        Policy.from_yaml(f"gates:\n  metrics: [{{metric: auc, min: {threshold}}}]\n")


def test_a_policy_without_gates_needs_acknowledgement(cp: ControlPlane, model_name: str) -> None:
    for text in ("", "approval: {required: false}", "gates: {}"):
        with pytest.raises(InvalidPolicy, match=r"names no gate.*gates: \{none: true\}"):
            cp.policies.set(model_name, Policy.from_yaml(text), "alice")
    with pytest.raises(NoPolicy):
        cp.policies.current(model_name)  # nothing was stored
    stored = cp.policies.set(model_name, Policy.from_yaml("gates: {none: true}"), "alice")
    assert stored.policy.build_gates() == []
    with pytest.raises(InvalidPolicy, match="drop one"):
        cp.policies.set(
            model_name, Policy.from_yaml("gates: {none: true, drift_reference: true}"), "a"
        )


def test_serving_section_is_optional_and_checked() -> None:
    plain = Policy.from_yaml("slo: {p99_ms: 100}")
    assert "serving" not in plain.body()  # stored policies keep their sha256
    policy = Policy.from_yaml(
        "serving: {cache: {ttl_s: 30}, limits: {rate_per_s: 5}, priority: batch}"
    )
    assert policy.serving is not None
    assert policy.serving.cache is not None
    assert (policy.serving.cache.ttl_s, policy.serving.cache.max_entries) == (30, 10_000)
    assert "shared" not in policy.body()["serving"]["cache"]  # unsaid: not shared, same sha256
    shared = Policy.from_yaml("serving: {cache: {ttl_s: 30, shared: true}}")
    assert shared.serving is not None
    assert shared.serving.cache is not None
    assert shared.serving.cache.shared is True
    with pytest.raises(InvalidPolicy, match=r"serving\.priority"):
        Policy.from_yaml("serving: {priority: urgent}")
    with pytest.raises(InvalidPolicy, match=r"serving\.cache\.ttl_s"):
        Policy.from_yaml("serving: {cache: {ttl_s: 0}}")
