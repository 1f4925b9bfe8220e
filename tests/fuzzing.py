"""Fuzzing a running app from its own OpenAPI document with schemathesis: every operation,
a bounded number of generated requests each (valid and invalid ones), every answer checked.

    report = fuzz(base_url, headers={"Authorization": "Bearer ..."}, examples=8)
    assert not report.failures, report.describe()

A failure is a 5xx, a status the document does not list for the operation, a body that
breaks the documented schema, or an undocumented content type. Generation is derandomized,
so a run repeats exactly and CI stays within its time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
]


@dataclass
class Report:
    requests: int = 0
    call_s: float = 0.0  # of the run's time, waiting on the server (the rest: generation)
    operations: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    slowest: dict[str, float] = field(default_factory=dict)  # operation -> server seconds

    def describe(self) -> str:
        return f"{len(self.failures)} operation(s) failed:\n\n" + "\n\n".join(self.failures)


def fuzz(
    base_url: str,
    headers: dict[str, str],
    examples: int,
    skip: frozenset[tuple[str, str]] = frozenset(),
    path_parameters: dict[str, Any] | None = None,
) -> Report:
    """Run every operation of ``base_url``'s /openapi.json but ``skip`` ((METHOD, path)).
    ``path_parameters`` fix those an operation takes (a served model's name: requests then
    reach the model instead of stopping at 404); the others are generated."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    report = Report()
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in skip:
            continue
        report.operations += 1
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            fixed = {
                p.name: value
                for p in operation.path_parameters
                if (value := (path_parameters or {}).get(p.name)) is not None
            }
            try:
                _run(operation, mode, fixed, base_url, headers, examples, report)
            except Unsatisfiable:
                continue  # no invalid request exists (no parameters, or only free strings)
            except Exception as exc:  # a check's failure, with its reproduction
                where = f"{operation.method.upper()} {operation.path} ({mode.value})"
                report.failures.append(f"{where}: {exc}")
    return report


def _run(
    operation: Any,
    mode: schemathesis.GenerationMode,
    fixed: dict[str, Any],
    base_url: str,
    headers: dict[str, str],
    examples: int,
    report: Report,
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=fixed or None))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        start = time.perf_counter()
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        took = time.perf_counter() - start
        report.call_s += took
        key = f"{operation.method.upper()} {operation.path}"
        report.slowest[key] = report.slowest.get(key, 0.0) + took
        report.requests += 1
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    run()
