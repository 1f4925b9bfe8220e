"""torch.export archives are read as data before torch loads them: every way an archive can
make ``torch.export.load(...).module()`` run code is refused, and the code never runs."""

from __future__ import annotations

import contextlib
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from registry import InvalidModel
from registry.errors import UnsafeModel
from registry.model_files import load_model_file
from registry.pt2 import check_pt2
from tests.registry import crafted

WHY = {
    "pickled weight": "is pickled (use_pickle in model_weights_config.json)",
    "pickled constant": "is pickled (use_pickle in model_constants_config.json)",
    "custom object": "is a custom or opaque object",
    "guard code": "a guard reads .write_text",
    "pickled sample inputs": "pickle calls __builtin__.exec",
}


@pytest.fixture(scope="module")
def good() -> bytes:
    return crafted.exported_archive()


def test_a_real_export_passes_and_loads(tmp_path: Path, good: bytes) -> None:
    path = tmp_path / "m.pt2"
    path.write_bytes(good)
    check_pt2(path)
    assert load_model_file(path)(torch.ones(3, 4)).shape == (3, 1)


@pytest.mark.parametrize("kind", sorted(crafted.HOSTILE))
def test_each_hostile_archive_runs_code_in_plain_torch(
    tmp_path: Path, good: bytes, kind: str
) -> None:
    # The premise: each crafted archive really is an exploit of torch.export.load.
    marker = tmp_path / "pwned"
    path = tmp_path / "m.pt2"
    path.write_bytes(crafted.HOSTILE[kind](good, marker))
    with contextlib.suppress(Exception):  # torch fails after the payload ran, or not at all
        torch.export.load(str(path)).module()(torch.ones(2, 4))
    assert marker.read_text() != ""


@pytest.mark.parametrize("kind", sorted(crafted.HOSTILE))
def test_each_hostile_archive_is_refused_before_it_runs(
    tmp_path: Path, good: bytes, kind: str
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "m.pt2"
    path.write_bytes(crafted.HOSTILE[kind](good, marker))
    with pytest.raises(UnsafeModel, match="not plain data") as refused:
        load_model_file(path)
    assert not marker.exists()
    assert WHY[kind] in str(refused.value)


def _edit_program(good: bytes, edit: Callable[[dict], None]) -> bytes:
    def change(members: dict[str, bytes]) -> None:
        program = json.loads(members["models/model.json"])
        edit(program)
        members["models/model.json"] = json.dumps(program).encode()

    return crafted._rewrite(good, change)


def _node_target(program: dict) -> None:
    program["graph_module"]["graph"]["nodes"][0]["target"] = "torch.os.system"


def _shape_expression(program: dict) -> None:
    program["range_constraints"]["__import__('os').system('true')"] = {"min_val": 2}


@pytest.mark.parametrize(
    ("edit", "expect"),
    [(_node_target, "torch.os.system"), (_shape_expression, "shape expression")],
)
def test_code_hidden_in_the_program_is_refused(
    tmp_path: Path, good: bytes, edit: Callable[[dict], None], expect: str
) -> None:
    path = tmp_path / "m.pt2"
    path.write_bytes(_edit_program(good, edit))
    with pytest.raises(UnsafeModel, match=expect):
        check_pt2(path)


def test_unknown_members_are_refused(tmp_path: Path, good: bytes) -> None:
    path = tmp_path / "m.pt2"
    path.write_bytes(crafted.unknown_member(good))
    with pytest.raises(UnsafeModel, match=r"unknown member 'data/aotinductor/model/model\.so'"):
        check_pt2(path)


def test_a_zip_faked_as_an_export_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "fake.pt2"
    crafted.fake_export(path)
    with pytest.raises(InvalidModel) as refused:
        load_model_file(path)
    assert "\n" not in str(refused.value)
    assert "lacks data/weights/model_weights_config.json" in str(refused.value)


def test_a_saved_module_needs_the_unsafe_flag(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save(crafted.make_net(), path)
    with pytest.raises(UnsafeModel, match="--unsafe-allow-pickle") as refused:
        load_model_file(path)
    assert "torch.export.export(model.eval(), (x,))" in str(refused.value)
    assert load_model_file(path, unsafe_allow_pickle=True)(torch.ones(2, 4)).shape == (2, 1)


def test_a_module_pickled_from_a_script_says_how_to_export(tmp_path: Path) -> None:
    # What torch.save of a class defined in a training script leaves: a reference to
    # __main__.Net, which the loading process lacks.
    path = tmp_path / "m.pt"
    buffer = io.BytesIO()
    torch.save(crafted.make_net(), buffer)
    with zipfile.ZipFile(buffer) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith("data.pkl"):
                data = data.replace(b"torch.nn.modules.container\nSequential", b"__main__\nNet")
            dst.writestr(name, data)
    with pytest.raises(InvalidModel, match="Can't get attribute 'Net'") as refused:
        load_model_file(path, unsafe_allow_pickle=True)
    assert 'torch.export.save(program, "model.pt2")' in str(refused.value)
