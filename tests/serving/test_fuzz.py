"""schemathesis against the serving app on a real uvicorn: every documented operation, valid
and invalid requests, no 5xx, no undocumented status, every body as documented."""

from __future__ import annotations

import time

import pytest

from serving.spec import Deployment
from tests.fuzzing import fuzz
from tests.serving.conftest import StaticLoader, make_model, spec_for
from tests.serving.test_app import serve

pytestmark = pytest.mark.e2e
EXAMPLES = 10  # per operation and mode: about 120 requests


def test_serving_fuzz_finds_no_server_error_and_nothing_undocumented() -> None:
    loader = StaticLoader()
    loader.add(spec_for("churn", 1, service="churn_features@1"), make_model(1))
    server, _ = serve(loader, Deployment("churn", champion=1))
    with server:
        start = time.monotonic()
        report = fuzz(server.url, {}, EXAMPLES, path_parameters={"name": "churn"})
        took = time.monotonic() - start
    assert not report.failures, report.describe()
    assert report.operations >= 12
    assert report.requests >= report.operations * 2
    print(f"serving fuzz: {report.requests} requests in {took:.1f} s, statuses {report.statuses}")
