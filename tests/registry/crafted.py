"""Hostile torch.export archives, built from a real one: each would run code on a plain
``torch.export.load(...).module()`` (writing ``marker``), and must be refused unread.

    good = exported_archive()                        # bytes of torch.export.save(...)
    bad = pickled_weight(good, tmp_path / "pwned")   # the issue's exploit
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from registry.archive import export_archive
from tests.conftest import make_net


class WritesFile:
    """Unpickling this writes ``path``: what an attacker's payload does, harmlessly."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"__import__('pathlib').Path({self.path!r}).write_text('ran')",))


def payload(marker: Path) -> bytes:
    return pickle.dumps(WritesFile(marker), protocol=2)


def exported_archive(seed: int = 0) -> bytes:
    example = np.random.default_rng(seed).random((6, 4), dtype=np.float32)
    return export_archive(make_net(seed), example)


def _rewrite(good: bytes, change: Callable[[dict[str, bytes]], None]) -> bytes:
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        root = archive.namelist()[0].split("/", 1)[0] + "/"
        members = {n[len(root) :]: archive.read(n) for n in archive.namelist()}
    change(members)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(root + name, data)
    return out.getvalue()


def _config(members: dict[str, bytes], name: str) -> dict[str, Any]:
    raw = members.get(name)
    return json.loads(raw) if raw else {"config": {}}


def pickled_weight(good: bytes, marker: Path) -> bytes:
    """The issue's exploit: a weight marked ``use_pickle`` whose bytes are a payload."""

    def change(members: dict[str, bytes]) -> None:
        name = "data/weights/model_weights_config.json"
        config = _config(members, name)
        fqn = next(iter(config["config"]))
        entry = config["config"][fqn]
        entry["use_pickle"] = True
        members[f"data/weights/{entry['path_name']}"] = payload(marker)
        members[name] = json.dumps(config).encode()

    return _rewrite(good, change)


def pickled_constant(good: bytes, marker: Path) -> bytes:
    """A tensor constant marked ``use_pickle``, its bytes a payload."""
    return _constant(good, "tensor_9", marker)


def custom_object(good: bytes, marker: Path) -> bytes:
    """An opaque (custom) object among the constants: torch unpickles it with pickle.loads."""
    return _constant(good, "opaque_obj_0", marker)


def _constant(good: bytes, path_name: str, marker: Path) -> bytes:
    def change(members: dict[str, bytes]) -> None:
        name = "data/constants/model_constants_config.json"
        config = _config(members, name)
        config["config"]["evil"] = {
            "path_name": path_name,
            "is_param": False,
            "use_pickle": True,
            "tensor_meta": None,
        }
        members[name] = json.dumps(config).encode()
        members[f"data/constants/{path_name}"] = payload(marker)

    return _rewrite(good, change)


def guard_code(good: bytes, marker: Path) -> bytes:
    """A guard (exec'd as Python by ``.module()``) that writes the file."""

    def change(members: dict[str, bytes]) -> None:
        program = json.loads(members["models/model.json"])
        program["guards_code"] = [
            f"__import__('pathlib').Path({str(marker)!r}).write_text('ran') > 0"
        ]
        members["models/model.json"] = json.dumps(program).encode()

    return _rewrite(good, change)


def pickled_sample_inputs(good: bytes, marker: Path) -> bytes:
    """Sample inputs that fail torch's restricted unpickler, so it falls back to pickle."""

    def change(members: dict[str, bytes]) -> None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as inner:
            inner.writestr("model/data.pkl", payload(marker))
            inner.writestr("model/version", b"3\n")
        members["data/sample_inputs/model.pt"] = buffer.getvalue()

    return _rewrite(good, change)


def unknown_member(good: bytes) -> bytes:
    def change(members: dict[str, bytes]) -> None:
        members["data/aotinductor/model/model.so"] = b"\x7fELF"

    return _rewrite(good, change)


def fake_export(path: Path) -> None:
    """A zip that names itself a torch.export archive and holds nothing else."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("model/archive_format", b"pt2")
        archive.writestr("model/models/model.json", b"{}")


HOSTILE = {
    "pickled weight": pickled_weight,
    "pickled constant": pickled_constant,
    "custom object": custom_object,
    "guard code": guard_code,
    "pickled sample inputs": pickled_sample_inputs,
}
