"""The code version a model was trained from: the git commit, marked when the tree is dirty."""

from __future__ import annotations

import subprocess
from pathlib import Path


def detect_code_version(path: Path | None = None) -> str | None:
    """``<sha>`` or ``<sha>+dirty`` for the git checkout at ``path``; None outside git."""
    cwd = path or Path.cwd()
    try:
        sha = _git(cwd, "rev-parse", "HEAD")
        dirty = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}+dirty" if dirty else sha


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()
