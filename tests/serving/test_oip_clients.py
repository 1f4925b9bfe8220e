"""The Open Inference Protocol's own clients against a real uvicorn: Triton's `tritonclient.http`
and KServe's `InferenceRESTClient`, each with its defaults (binary tensors both ways), at 1, 32
and 64 rows; their error paths decode our error bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from serving.config import BatchingConfig, ServerConfig
from serving.manager import ModelManager
from serving.spec import Deployment
from tests.serving.conftest import (
    DictLookup,
    Server,
    StaticLoader,
    StaticSource,
    make_model,
    spec_for,
)

pytestmark = pytest.mark.e2e

ROWS = (1, 32, 64)


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    loader = StaticLoader()
    loader.add(spec_for("churn", 1), make_model(1))
    source = StaticSource({"churn": Deployment("churn", champion=1)})
    config = ServerConfig(batching=BatchingConfig(32, 1.0), poll_s=0.05)
    with Server(ModelManager(loader, source, config, lookup=DictLookup({}))) as running:
        yield running


def expected(x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return make_model(1)(torch.from_numpy(x)).numpy()


def batch(rows: int) -> np.ndarray:
    return np.random.default_rng(rows).random((rows, 5), dtype=np.float32)


@pytest.mark.parametrize("rows", ROWS)
def test_triton_client_with_its_defaults(server: Server, rows: int) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("churn")
        assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
        x = batch(rows)
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)  # binary_data=True by default
        result = client.infer("churn", [tensor])
        out = result.as_numpy("output")
        response = result.get_response()
    finally:
        client.close()
    assert out is not None
    assert out.shape == (rows, 1)
    assert np.allclose(out, expected(x), atol=1e-6)
    assert response["outputs"][0]["parameters"]["binary_data_size"] == rows * 4


def test_triton_client_json_outputs_and_errors(server: Server) -> None:
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        x = batch(3)
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=False)
        wanted = triton.InferRequestedOutput("output", binary_data=False)
        result = client.infer("churn", [tensor], outputs=[wanted], request_id="r-7")
        assert np.allclose(result.as_numpy("output"), expected(x), atol=1e-6)
        assert result.get_response()["id"] == "r-7"
        wrong = triton.InferInput("pixels", [3, 5], "FP32")
        wrong.set_data_from_numpy(x)
        with pytest.raises(InferenceServerException, match="unknown input 'pixels'"):
            client.infer("churn", [wrong])
        with pytest.raises(InferenceServerException, match="not served here"):
            client.infer("nope", [tensor])
    finally:
        client.close()


@pytest.mark.parametrize("rows", ROWS)
def test_kserve_client_with_its_defaults(server: Server, rows: int) -> None:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    x = batch(rows)

    async def call() -> tuple[object, bool]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        tensor = InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)  # binary_data=True by default
        request = InferRequest(model_name="churn", infer_inputs=[tensor])
        try:
            response = await client.infer(server.url, request, model_name="churn")
            ready = await client.is_model_ready(server.url, "churn")
        finally:
            await client.close()
        return response, ready

    response, ready = asyncio.run(call())
    assert ready
    out = response.outputs[0].as_numpy()  # type: ignore[attr-defined]
    assert out.shape == (rows, 1)
    assert np.allclose(out, expected(x), atol=1e-6)


def test_kserve_client_binary_outputs_and_errors(server: Server) -> None:
    import httpx
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    x = batch(4)

    async def call() -> tuple[object, str]:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
        tensor = InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=False)
        request = InferRequest(
            model_name="churn", infer_inputs=[tensor], parameters={"binary_data_output": True}
        )
        bad = InferInput("input", [4, 3], "FP32")
        bad.set_data_from_numpy(x[:, :3].copy())
        try:
            response = await client.infer(server.url, request, model_name="churn")
            await client.infer(
                server.url, InferRequest(model_name="churn", infer_inputs=[bad]), "churn"
            )
        except httpx.HTTPStatusError as exc:
            return response, str(exc)
        finally:
            await client.close()
        return response, ""

    response, error = asyncio.run(call())
    assert np.allclose(response.outputs[0].as_numpy(), expected(x), atol=1e-6)  # type: ignore[attr-defined]
    assert "400" in error
    assert "has shape [4, 3]" in error
