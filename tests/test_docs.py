"""The docs: the references read off the code are current, and nothing in the repository
points outside it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Spelled in pieces so that this file does not match itself.
OUTSIDE = ("../" + "shared", "shared/" + "notes-deps", "/work/" + "shared", "design" + ".md")


def test_generated_docs_are_current() -> None:
    # In a process of its own, as `make docs` runs: what other tests did to this process
    # (commands added to the CLI group in tests, environment) must not leak into the check.
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "generate.py"), "--check"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}{done.stderr}; run `make docs`"


def test_the_references_cover_every_command_and_route() -> None:
    cli = (ROOT / "docs" / "reference" / "cli.md").read_text()
    for command in ("mlcp promote", "mlcp tokens list", "mlcp controller run", "mlcp serve"):
        assert f"## `{command}`" in cli, command
    rest = (ROOT / "docs" / "reference" / "rest.md").read_text()
    for route in ("POST /v1/models/{name}/versions/{version}/promote", "GET /v1/tokens",
                  "POST /v1/evaluations", "GET /v2/health/ready"):  # fmt: skip
        assert f"### `{route}`" in rest, route
    settings = (ROOT / "docs" / "configuration.md").read_text()
    assert "| `MLCP_FEATURE_GENERATIONS` | `database` |" in settings


def test_nothing_in_the_repository_points_outside_it() -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    found = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.suffix in {".parquet", ".npy", ".pt2", ".png"}:
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}: {needle}" for needle in OUTSIDE if needle in text]
    assert found == []
