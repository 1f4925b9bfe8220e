"""A model's report end to end: a story played on the real stores (windows, the controller's
analyses, a canary rolled back for latency, a champion rolled back on drift), `mlcp report`
writing the page, and headless Chromium drawing it: every chart's paths laid out, and its
pixels showing the versions' colours and the rollbacks' red."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from controlplane.cli import main
from controlplane.report import gather_report, write_report
from controlplane.report.charts import version_color
from controlplane.settings import Settings
from tests.controlplane.report import browser
from tests.controlplane.report.scenario import START, Clock, ClockedControlPlane, Story

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TIME_CHARTS = ("latency", "errors", "share", "drift")
ROLLBACK_RED = (0xD6, 0x27, 0x28)


@dataclass
class Played:
    cp: ClockedControlPlane
    name: str
    home: Path
    settings: Settings
    page: Path
    work: Path


@pytest.fixture(scope="module")
def played(
    tmp_path_factory: pytest.TempPathFactory, mlflow_store: tuple[str, str]
) -> Iterator[Played]:
    work = tmp_path_factory.mktemp("report")
    uri, artifacts = mlflow_store
    settings = Settings(
        home=work / ".mlcp", mlflow_tracking_uri=uri, artifact_root=artifacts, actor="tester"
    )
    name = f"report_{uuid.uuid4().hex[:8]}"
    cp = ClockedControlPlane(settings, Clock(START))
    try:
        Story(cp, name, work).play()
        page = write_report(cp, name, work / "report.html")
        yield Played(cp, name, work / ".mlcp", settings, page, work)
    finally:
        cp.close()


class _Svg(HTMLParser):
    """The charts' and paths' attributes as the browser left them."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, str | None]] = {}
        self.paths: dict[str, list[dict[str, str | None]]] = {}
        self.body: dict[str, str | None] = {}
        self._chart: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "body":
            self.body = found
        elif tag == "svg" and found.get("data-chart"):
            self._chart = str(found["data-chart"])
            self.charts[self._chart] = found
            self.paths[self._chart] = []
        elif tag == "path" and self._chart is not None and "data-points" in found:
            self.paths[self._chart].append(found)

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._chart = None


def test_the_story_is_in_the_report_data(played: Played) -> None:
    data = gather_report(played.cp, played.name)
    [canary, drift] = data["rollbacks"]
    assert (canary["version"], canary["automatic"], canary["to"]) == (3, True, None)
    assert any(check.startswith("p99") for check in canary["failed_checks"])
    assert (drift["version"], drift["to"]) == (2, 1)
    assert drift["drifting"] == ["a"]
    kinds = [e["kind"] for e in data["events"]]
    assert kinds.count("canary") == 3  # v2 at 10% and 50%, v3 at 10%
    assert kinds.count("promote") == 2
    shares = {s["version"]: [p["share"] for p in s["points"]] for s in data["traffic"]}
    assert set(shares) == {1, 2, 3}
    assert max(shares[3]) < 0.2  # v3 never got past its first step
    assert [d["version"] for d in data["drift"]] == [1, 2, 3]
    assert max(p["score"] for p in data["drift"][1]["points"]) >= 1.0  # v2's confirmed drift
    assert {v["version"]: v["state"] for v in data["versions"]} == {
        1: "production", 2: "rolled_back", 3: "rolled_back",
    }  # fmt: skip


def test_chromium_lays_out_every_chart_and_series(
    played: Played, tmp_path_factory: pytest.TempPathFactory
) -> None:
    svg = _Svg()
    svg.feed(browser.dump_dom(played.page, tmp_path_factory.mktemp("chromium")))
    assert int(svg.body["data-drawn"] or 0) > 20
    assert set(svg.charts) == {"events", *TIME_CHARTS, "lineage"}
    for chart in (*TIME_CHARTS, "lineage"):
        assert int(svg.charts[chart]["data-drawn"] or 0) > 0, chart
        assert int(svg.charts[chart]["data-height"] or 0) > 100, chart
    for chart in TIME_CHARTS:
        for path in svg.paths[chart]:
            assert float(path["data-length"] or 0) > 0, (chart, path)
    latency = {p["data-points"] for p in svg.paths["latency"]}
    assert len(latency) > 1  # versions served for different lengths of time
    assert len(svg.paths["drift"]) == 3


def test_the_screenshot_shows_each_chart_s_lines_and_the_rollbacks(
    played: Played, tmp_path_factory: pytest.TempPathFactory
) -> None:
    profile = tmp_path_factory.mktemp("chromium")
    svg = _Svg()
    svg.feed(browser.dump_dom(played.page, profile))
    height = int(svg.body["data-height"] or 0)
    shot = browser.screenshot(
        played.page, profile, played.work / "report.png", 1100, min(height, 16000)
    )
    image = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    for chart in TIME_CHARTS:
        top = int(svg.charts[chart]["data-top"] or 0)
        pixels = image[top : top + int(svg.charts[chart]["data-height"] or 0)]
        assert pixels.shape[0] > 100, chart
        assert _near(pixels, ROLLBACK_RED) > 150, f"{chart}: no rollback marker drawn"
        for version in (1, 2):
            colour = _rgb(version_color(version))
            assert _near(pixels, colour) > 50, f"{chart}: v{version} not drawn"
        white = (pixels == 255).all(axis=2).mean()
        assert white < 0.97, chart


def test_mlcp_report_writes_the_page(
    played: Played, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = played.settings
    monkeypatch.chdir(played.work)
    monkeypatch.setenv("MLCP_HOME", str(settings.home))
    monkeypatch.setenv("MLCP_MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri)
    monkeypatch.setenv("MLCP_ARTIFACT_ROOT", str(settings.artifact_root))
    since = "2026-03-02T09:03:00Z"
    assert main(["report", played.name, "--since", since]) == 0
    out = played.work / f"{played.name}-report.html"
    assert f"wrote {out.name}" in capsys.readouterr().out
    html = out.read_text()
    assert re.search(r"From 2026-03-02 09:03:00 to 2026-03-02 09:\d\d:\d\d", html)
    assert 'data-chart="latency"' in html

    assert main(["report", played.name, "--since", "yesterday"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--since" in err[0]
    assert "neither a duration" in err[0]
    assert main(["report", "no_such_model", "--out", str(played.work / "x.html")]) == 2
    assert "is not registered" in capsys.readouterr().err
    assert not (played.work / "x.html").exists()
    blocked = played.page / "sub" / "r.html"  # under a file: not even root writes there
    assert main(["report", played.name, "--out", str(blocked)]) == 2
    assert "can't write" in capsys.readouterr().err


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))


def _near(pixels: np.ndarray, colour: tuple[int, int, int], within: int = 24) -> int:
    """How many pixels are within ``within`` of ``colour`` in every channel."""
    return int((np.abs(pixels - np.array(colour)) <= within).all(axis=2).sum())
