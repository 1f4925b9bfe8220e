"""A file or folder named like one of mlcp's packages, beside a script, is found and named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from controlplane.shadowing import PACKAGES, advice, shadowed, shadows_beside

ROOT = Path(__file__).resolve().parents[2]


def test_nothing_is_shadowed_in_the_repository() -> None:
    assert shadowed() == {}
    assert shadows_beside(ROOT) == []  # mlcp's own packages are not shadows


def test_files_and_packages_beside_a_script_are_found(tmp_path: Path) -> None:
    (tmp_path / "features.py").write_text("DEFINITIONS = None\n")
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "__init__.py").write_text("")
    (tmp_path / "registry").mkdir()  # no __init__.py: a namespace portion never wins

    assert shadows_beside(tmp_path) == [tmp_path / "features.py", tmp_path / "serving"]
    found = shadowed(modules={}, path=[str(tmp_path), *sys.path])
    assert found == {
        "features": tmp_path / "features.py",
        "serving": tmp_path / "serving" / "__init__.py",
    }
    assert set(found) < set(PACKAGES)
    line = advice("features", tmp_path / "features.py")
    assert f"the file {tmp_path / 'features.py'} shadows mlcp's `features` package" in line
    assert "rename it, e.g. churn_features.py" in line


def test_importing_the_control_plane_beside_a_features_file_warns(tmp_path: Path) -> None:
    (tmp_path / "features.py").write_text("")
    (tmp_path / "train.py").write_text("import controlplane\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "train.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "ShadowedPackage" in done.stderr
    assert "shadows mlcp's `features` package" in done.stderr
