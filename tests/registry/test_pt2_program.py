"""registry.pt2_program rebuilds what torch.export.load(...).module() builds, without
torch's deserializer: same outputs, same state_dict, same input guard, and None (torch's
loader then) for what it leaves to torch."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from registry.evaluation import fixed_batch_size, input_width
from registry.pt2 import check_pt2
from registry.pt2_program import load_program

ROOT = Path(__file__).resolve().parents[2]


class ConvBatchNorm(nn.Module):
    """Buffers (running stats), a view on the dynamic batch size, softmax over a dim."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4 * 8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn(self.conv(x.unsqueeze(1))).relu()
        return self.fc(h.view(h.shape[0], -1)).softmax(dim=-1)


class TwoOutputs(nn.Module):
    """A buffer, a lifted tensor constant, split (a list result), a dtype cast, a tuple out."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 4)
        self.register_buffer("scale", torch.tensor(2.0))
        self.const = torch.arange(4.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.a(x) * self.scale + self.const
        lo, hi = h.split(2, dim=1)
        return lo.sum(1, keepdim=True), torch.cat([hi, lo], dim=1).to(torch.float64)


class Embedded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.e = nn.Embedding(10, 4)
        self.out = nn.Linear(8 * 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.out(self.e(x.long().clamp(0, 9)).flatten(1)))


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.norm = nn.LayerNorm(8)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.reshape(x.shape[0], 1, 8)
        out, _ = self.attn(q, q, q)
        return self.drop(self.norm(out)).mean(dim=(1, 2)).unsqueeze(-1)


class MultipleResults(nn.Module):
    """An op with two results (max: values, indices) and keyword arguments."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = x.max(dim=1)
        return values * 2 + indices.float(), torch.where(x > 0.5, x, torch.zeros_like(x)).std(1)


class Branching(nn.Module):
    """A higher-order op (cond): left to torch.export.load."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.sum() > 0, lambda x: x + 1, lambda x: x - 1, (x,))


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(8, 32), nn.ReLU(), nn.LayerNorm(32), nn.Linear(32, 1), nn.Sigmoid()
    )


MODELS = {
    "mlp": mlp,
    "gelu_logsoftmax": lambda: nn.Sequential(
        nn.Linear(8, 16), nn.GELU(approximate="tanh"), nn.Linear(16, 3), nn.LogSoftmax(-1)
    ),
    "conv_batchnorm": ConvBatchNorm,
    "two_outputs": TwoOutputs,
    "embedding": Embedded,
    "attention": Attention,
    "multiple_results": MultipleResults,
}


def archive(model: nn.Module, dynamic: bool = True) -> bytes:
    torch.manual_seed(0)
    x = torch.rand(5, 8)
    shapes = ({0: torch.export.Dim.AUTO},) if dynamic else None
    program = torch.export.export(model.eval(), (x,), dynamic_shapes=shapes)
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    check_pt2(io.BytesIO(buffer.getvalue()))  # what every caller has done first
    return buffer.getvalue()


def as_tuple(value: Any) -> tuple[torch.Tensor, ...]:
    return value if isinstance(value, tuple) else (value,)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_rebuilt_module_computes_what_torchs_does(name: str) -> None:
    torch.manual_seed(1)
    data = archive(MODELS[name]())
    theirs = torch.export.load(io.BytesIO(data)).module()
    ours = load_program(io.BytesIO(data))
    assert ours is not None
    for rows in (1, 3, 17):
        x = torch.rand(rows, 8) * 3 - 1
        with torch.inference_mode():
            expected, got = as_tuple(theirs(x)), as_tuple(ours(x))
        assert len(expected) == len(got)
        for want, have in zip(expected, got, strict=True):
            assert have.dtype == want.dtype
            assert have.shape == want.shape
            assert torch.equal(have, want)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value)
    assert not ours.training


def test_inputs_torch_guards_are_refused_the_same_way() -> None:
    ours = load_program(io.BytesIO(archive(mlp())))
    assert ours is not None
    with pytest.raises(AssertionError, match=r"size\(\)\[1\] == 8"):
        ours(torch.rand(3, 7))
    with pytest.raises(AssertionError, match=r"dim\(\) == 2"):
        ours(torch.rand(3, 8, 1))
    static = load_program(io.BytesIO(archive(mlp(), dynamic=False)))
    assert static is not None
    with pytest.raises(AssertionError, match=r"size\(\)\[0\] == 5"):
        static(torch.rand(4, 8))


def test_the_traced_input_shape_is_readable_as_from_torchs_module() -> None:
    """The gates read the placeholder's traced shape: width, and a static batch size."""
    dynamic = load_program(io.BytesIO(archive(mlp())))
    static = load_program(io.BytesIO(archive(mlp(), dynamic=False)))
    assert dynamic is not None
    assert static is not None
    assert (fixed_batch_size(dynamic), input_width(dynamic)) == (None, 8)
    assert (fixed_batch_size(static), input_width(static)) == (5, 8)


def test_a_higher_order_op_is_left_to_torch() -> None:
    assert load_program(io.BytesIO(archive(Branching()))) is None


def test_loading_imports_neither_dynamo_nor_torchs_deserializer(tmp_path: Path) -> None:
    path = tmp_path / "model.pt2"
    path.write_bytes(archive(mlp()))
    probe = (
        "import sys; from registry.pt2_program import load_program; "
        f"m = load_program({str(path)!r}); import torch; m(torch.rand(2, 8)); "
        "print(sorted(n for n in ('torch._dynamo', 'torch._export.serde.serialize') "
        "if n in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_an_archive_laid_out_otherwise_is_left_to_torch() -> None:
    """A program JSON this reader does not expect (a field missing, another schema major)
    is torch's to load or refuse: None, never a half-built module."""
    import json
    import zipfile

    data = archive(mlp())
    for change in ("drop signature", "schema 9"):
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                raw = src.read(info)
                if info.filename.endswith("models/model.json"):
                    program = json.loads(raw)
                    if change == "drop signature":
                        del program["graph_module"]["signature"]
                    else:
                        program["schema_version"]["major"] = 9
                    raw = json.dumps(program).encode()
                dst.writestr(info, raw)
        assert load_program(io.BytesIO(out.getvalue())) is None, change
