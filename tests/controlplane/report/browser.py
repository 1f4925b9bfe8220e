"""Headless Chromium (Debian's ``chromium`` package) for the report tests: the DOM after the
page's script ran, and a screenshot. Missing, it skips the test on a developer's machine and
fails it under ``CI=true`` (``.ci/run`` installs it). ``CHROMIUM_BIN`` names another binary."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
FLAGS = ("--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage",
         "--hide-scrollbars", "--force-device-scale-factor=1", "--no-first-run")  # fmt: skip


def chromium() -> str:
    """The binary: ``$CHROMIUM_BIN`` (another Chromium, or Chrome), else Debian's."""
    wanted = os.environ.get("CHROMIUM_BIN") or "chromium"
    found = shutil.which(wanted) or shutil.which(wanted, path="/usr/bin")
    if found is None:
        message = f"{wanted} is not installed: apt-get install chromium (.ci/run installs it)"
        if IN_CI:
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(message)
    return found


def run(page: Path, profile: Path, *flags: str) -> str:
    """Chromium on ``page`` with ``flags``; its stdout."""
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *flags, page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(page: Path, profile: Path, width: int = 1100, height: int = 2000) -> str:
    """The DOM once the page's script ran, laid out in a window ``width`` wide (as a
    screenshot of that width lays it out)."""
    return run(page, profile, "--dump-dom", f"--window-size={width},{height}")


def screenshot(page: Path, profile: Path, out: Path, width: int, height: int) -> Path:
    run(page, profile, f"--screenshot={out}", f"--window-size={width},{height}")
    assert out.stat().st_size > 0
    return out
