from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from registry import InvalidModel, InvalidRegistration
from registry.model_files import load_input_example, load_model_file
from tests.conftest import make_net


def test_loads_a_saved_module(tmp_path: Path) -> None:
    net = make_net()
    torch.save(net, tmp_path / "m.pt")
    loaded = load_model_file(tmp_path / "m.pt", unsafe_allow_pickle=True)
    x = torch.ones(2, 4)
    assert torch.equal(loaded(x), net(x))


def test_loads_an_exported_program(tmp_path: Path) -> None:
    net = make_net()
    x = torch.ones(3, 4)
    torch.export.save(torch.export.export(net, (x,)), tmp_path / "m.pt2")
    assert torch.allclose(load_model_file(tmp_path / "m.pt2")(x), net(x))


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        ("state_dict", "state_dict"),
        ("tensor", "holds a Tensor"),
        ("text", "not a torch archive"),
        ("script", "TorchScript"),
    ],
)
def test_refuses_what_is_not_a_module(tmp_path: Path, content: str, expect: str) -> None:
    path = tmp_path / "f.pt"
    if content == "state_dict":
        torch.save(make_net().state_dict(), path)
    elif content == "tensor":
        torch.save(torch.ones(3), path)
    elif content == "script":
        with pytest.warns(DeprecationWarning, match="jit"):
            torch.jit.save(torch.jit.script(make_net()), path)
    else:
        path.write_text("hello")
    with pytest.raises(InvalidModel, match=expect):
        load_model_file(path, unsafe_allow_pickle=True)


def test_example_from_npy_and_tables(tmp_path: Path) -> None:
    x = np.arange(8, dtype=np.float64).reshape(2, 4)
    np.save(tmp_path / "x.npy", x)
    assert load_input_example(tmp_path / "x.npy").dtype == np.float32
    frame = pd.DataFrame(x, columns=list("abcd")).assign(name=["p", "q"])
    frame.to_parquet(tmp_path / "x.parquet")
    frame.to_csv(tmp_path / "x.csv", index=False)
    for name in ("x.parquet", "x.csv"):
        got = load_input_example(tmp_path / name)
        assert got.shape == (2, 4)  # numeric columns only


@pytest.mark.parametrize(("name", "expect"), [("x.txt", "unsupported"), ("nope.npy", "no such")])
def test_example_errors(tmp_path: Path, name: str, expect: str) -> None:
    (tmp_path / "x.txt").write_text("1,2")
    with pytest.raises(InvalidRegistration, match=expect):
        load_input_example(tmp_path / name)
