"""`RemoteService` against scripted HTTP answers: what is retried, what is not, and how the
API's answers become the CLI's exit codes. (The real API end to end: tests/controlplane/api/
test_remote_cli_e2e.py.)"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import httpx
import pytest

from controlplane.cli.errors import BAD_INPUT, DENIED, INTERNAL, REFUSED, UNAVAILABLE, report
from controlplane.errors import ApiDenied, ApiError, ApiFailed, ApiRefused, ApiUnavailable
from controlplane.service.remote import RemoteService

Handler = Callable[[httpx.Request], httpx.Response]


def service(*answers: Handler | httpx.Response, retries: int = 3) -> tuple[RemoteService, list]:
    """A service whose n-th request gets the n-th answer (a response, or a handler that may
    raise a transport error); returns it and the requests it made."""
    seen: list[httpx.Request] = []
    waits: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[len(seen) - 1]
        return answer(request) if callable(answer) else answer

    remote = RemoteService(
        "http://cp.test", "mlcp_t", retries=retries,
        transport=httpx.MockTransport(handle), sleep=waits.append,
    )  # fmt: skip
    return remote, seen


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def timed_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("read timed out", request=request)


def error(status: int, kind: str, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"type": kind, "message": message}}, headers=headers
    )


def test_a_read_is_retried_on_connection_errors_and_503() -> None:
    remote, seen = service(
        refused, error(503, "DatabaseUnavailable", "db away", **{"Retry-After": "1"}),
        httpx.Response(200, json=[{"ref": "churn@1"}]),
    )  # fmt: skip
    assert remote.versions() == [{"ref": "churn@1"}]
    assert len(seen) == 3
    assert seen[0].headers["Authorization"] == "Bearer mlcp_t"


def test_a_promotion_is_retried_only_when_it_never_left() -> None:
    result = {"ref": "churn@2", "outcome": "promoted"}
    remote, seen = service(refused, httpx.Response(200, json=result))
    assert remote.promote("churn@2") == result
    assert len(seen) == 2

    remote, seen = service(timed_out, httpx.Response(200, json=result))
    with pytest.raises(ApiUnavailable, match="ReadTimeout"):
        remote.promote("churn@2")  # sent: it may have run, so it is not sent again
    assert len(seen) == 1

    remote, seen = service(error(503, "RegistryUnavailable", "mlflow away"))
    with pytest.raises(ApiUnavailable, match="mlflow away"):
        remote.promote("churn@2")
    assert len(seen) == 1


def test_a_refused_promotion_is_a_result_not_an_error() -> None:
    body = {"ref": "churn@2", "outcome": "refused", "reason": "metric:auc", "gates": []}
    remote, _ = service(httpx.Response(422, json=body))
    assert remote.promote("churn@2") == body


def test_retries_stop_after_the_limit() -> None:
    remote, seen = service(refused, refused, refused, retries=2)
    with pytest.raises(ApiUnavailable, match="after 3 tries") as caught:
        remote.versions()
    assert len(seen) == 3
    assert report(caught.value) == UNAVAILABLE


def test_a_registration_exports_uploads_and_waits_for_one_in_progress(tmp_path) -> None:
    import numpy as np
    import torch

    from controlplane.service.base import RegisterFiles
    from registry.archive import is_exported_archive
    from tests.conftest import make_net

    torch.save(make_net(), tmp_path / "model.pt")
    np.save(tmp_path / "x.npy", np.ones((3, 4), dtype=np.float32))
    stored = httpx.Response(201, json={"upload": "..."})
    remote, seen = service(
        httpx.Response(404), stored, httpx.Response(404), stored,
        error(409, "RegistrationInProgress", "still running"),
        httpx.Response(201, json={"ref": "churn@3"}),
    )  # fmt: skip
    files = RegisterFiles(
        "churn", tmp_path / "model.pt", tmp_path / "x.npy", unsafe_allow_pickle=True
    )

    assert remote.register(files) == {"ref": "churn@3"}

    assert [(r.method, r.url.path.rpartition("/")[2]) for r in seen] == [
        ("HEAD", "model.pt2"), ("PUT", "model.pt2"), ("HEAD", "x.npy"), ("PUT", "x.npy"),
        ("POST", "registrations"), ("POST", "registrations"),
    ]  # fmt: skip
    sent = seen[1].read()
    (tmp_path / "sent.pt2").write_bytes(sent)
    assert is_exported_archive(tmp_path / "sent.pt2")  # a torch.export program, not a pickle
    assert seen[1].url.path.split("/")[3] == hashlib.sha256(sent).hexdigest()
    key = json.loads(seen[4].read())["idempotency_key"]
    assert key.startswith("mlcp-cli-")  # so the second try returns the first's version
    assert json.loads(seen[5].read())["idempotency_key"] == key


@pytest.mark.parametrize(
    ("answer", "kind", "code"),
    [
        (error(401, "HTTPError", "unknown or revoked token"), ApiDenied, DENIED),
        (error(403, "HTTPError", "role 'viewer' may not promote"), ApiDenied, DENIED),
        (error(409, "ConcurrentChange", "model changed"), ApiRefused, REFUSED),
        (error(409, "InvalidTransition", "churn@1 is production"), ApiError, BAD_INPUT),
        (error(404, "ModelNotFound", "model 'x' is not registered"), ApiError, BAD_INPUT),
        (error(500, "Internal", "boom"), ApiFailed, INTERNAL),
        (httpx.Response(502, text="<html>bad gateway</html>"), ApiFailed, INTERNAL),
        (httpx.Response(422, json={"error": "plain message"}), ApiError, BAD_INPUT),
    ],
)
def test_api_errors_keep_the_message_and_map_to_exit_codes(answer, kind, code, capsys) -> None:
    remote, _ = service(answer)
    with pytest.raises(kind) as caught:
        remote.approve("churn@1")
    assert report(caught.value) == code
    assert capsys.readouterr().err.startswith("mlcp: error: ")


def test_an_upload_already_on_the_server_is_not_sent_again(tmp_path) -> None:
    data = tmp_path / "eval.parquet"
    data.write_bytes(b"rows")
    evaluation = {"candidate": {"ref": "churn@1"}, "champion": None}
    remote, seen = service(httpx.Response(200), httpx.Response(200, json=evaluation))
    from controlplane.service.base import EvaluateFiles

    assert remote.evaluate(EvaluateFiles("churn@1", data, "y")) == evaluation
    assert [r.method for r in seen] == ["HEAD", "POST"]
    body = seen[1].read().decode()
    assert '"data":"' in body.replace(" ", "")
    assert "/eval.parquet" in body
