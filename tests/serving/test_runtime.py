"""The runtime: eval mode, inference mode, half precision, warm-up, single-row exports."""

from __future__ import annotations

import pytest
import torch

from serving.config import RuntimeConfig
from serving.errors import ModelLoadFailed
from serving.runtime import ModelRuntime, best_device
from serving.spec import LoadedModel
from tests.serving.conftest import make_model, spec_for


def exported(seed: int) -> torch.nn.Module:
    """A torch.export program from a 4-row example, as MLflow's pt2 format loads it."""
    net = make_model(seed)
    batch = torch.export.Dim("batch")
    return torch.export.export(net, (torch.randn(4, 5),), dynamic_shapes=({0: batch},)).module()


def test_eager_model_matches_direct_forward() -> None:
    net = make_model(1)
    runtime = ModelRuntime(LoadedModel(spec_for("m", 1), make_model(1)), RuntimeConfig())
    runtime.warm_up((1, 4, 8))
    x = torch.randn(8, 5)
    assert torch.allclose(runtime.forward(x), net(x).detach())
    assert set(runtime.warmed_up) == {1, 4, 8}
    assert runtime.device == best_device("auto")


def test_exported_program_serves_a_single_row() -> None:
    runtime = ModelRuntime(LoadedModel(spec_for("m", 1), exported(2)), RuntimeConfig())
    runtime.warm_up((1, 2, 32))
    x = torch.randn(1, 5)
    assert runtime.forward(x).shape == (1, 1)
    assert torch.allclose(runtime.forward(x), make_model(2)(x).detach(), atol=1e-6)


def test_bfloat16_is_close_to_float32_and_returns_float32() -> None:
    runtime = ModelRuntime(
        LoadedModel(spec_for("m", 1), make_model(3)), RuntimeConfig(dtype="bfloat16")
    )
    runtime.warm_up((4,))
    x = torch.randn(16, 5)
    out = runtime.forward(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, make_model(3)(x).detach(), atol=0.05)


def test_model_that_fails_warm_up_is_refused() -> None:
    wrong = spec_for("m", 1, width=7)  # the module takes 5 features
    runtime = ModelRuntime(LoadedModel(wrong, make_model(1)), RuntimeConfig())
    with pytest.raises(ModelLoadFailed, match="warm-up at batch size 1 failed"):
        runtime.warm_up((1, 2))


def test_dropout_is_off_when_served() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(5, 64), torch.nn.Dropout(0.5), torch.nn.Linear(64, 1))
    runtime = ModelRuntime(LoadedModel(spec_for("m", 1), net.train()), RuntimeConfig())
    x = torch.randn(4, 5)
    assert torch.equal(runtime.forward(x), runtime.forward(x))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_precision_matches_cpu() -> None:
    runtime = ModelRuntime(
        LoadedModel(spec_for("m", 1), make_model(4)), RuntimeConfig(device="cuda", dtype="float16")
    )
    runtime.warm_up((1, 8))
    x = torch.randn(8, 5)
    assert runtime.device.type == "cuda"
    assert torch.allclose(runtime.forward(x), make_model(4)(x).detach(), atol=0.01)
