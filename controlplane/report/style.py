"""The report page's inline stylesheet and script (no fonts, images or scripts fetched)."""

CSS = """
:root { --fg:#1d2430; --muted:#667085; --line:#d0d5dd; --bg:#fff; --panel:#f7f8fa;
  --bad:#d62728; --good:#2a8a3e; --live:#1f6fd1; --warn:#e08a00; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width:1040px; margin:0 auto; padding:20px; }
h1 { margin:0 0 4px; font-size:26px; }
h1 small { color:var(--muted); font-weight:400; font-size:16px; }
h2 { margin:32px 0 8px; font-size:19px; border-bottom:1px solid var(--line); padding-bottom:4px; }
h3 { margin:18px 0 4px; font-size:15px; }
.note { color:var(--muted); margin:2px 0 8px; }
code { font:12px ui-monospace, "DejaVu Sans Mono", monospace; }
.summary { display:flex; flex-wrap:wrap; gap:8px; margin-top:10px; }
.cell { background:var(--panel); border:1px solid var(--line); border-radius:6px;
  padding:6px 10px; }
.cell span { display:block; color:var(--muted); font-size:12px; } .cell b { font-size:15px; }
.cell.wide { flex-basis:100%; } .cell.wide b { font-size:13px; font-weight:500; }
figure { margin:14px 0 6px; } figcaption h3 { margin:0; } figcaption .note { margin:0 0 4px; }
svg { display:block; max-width:100%; height:auto; overflow:visible; }
svg text { font:11px system-ui, "DejaVu Sans", sans-serif; fill:var(--fg); }
.grid line { stroke:#eaecf0; } .ytick { text-anchor:end; fill:var(--muted); }
.xaxis line { stroke:#98a2b3; } .xtick { text-anchor:middle; fill:var(--muted); }
.xlabel, .ylabel { text-anchor:middle; fill:var(--muted); font-size:12px; }
.empty { text-anchor:middle; fill:var(--muted); font-size:13px; }
.guide line { stroke:#98a2b3; stroke-dasharray:2 3; } .guide text { text-anchor:end; fill:#475467; }
.mark { stroke-width:1.5; } .mark.rollback { stroke:var(--bad); stroke-width:2; }
.mark.promote { stroke:var(--good); } .mark.canary { stroke:var(--live); stroke-dasharray:4 3; }
.mark.hold { stroke:var(--warn); stroke-dasharray:2 2; } .mark.shadow { stroke:#98a2b3; }
.marklabel.rollback { fill:var(--bad); font-weight:600; }
.ev line { stroke-width:1.5; } .ev text { font-size:11px; }
.ev.rollback line { stroke:var(--bad); } .ev.rollback text { fill:var(--bad); font-weight:600; }
.ev.promote line { stroke:var(--good); } .ev.promote text { fill:var(--good); }
.ev.canary line { stroke:var(--live); stroke-dasharray:4 3; } .ev.canary text { fill:var(--live); }
.ev.hold line { stroke:var(--warn); } .ev.hold text { fill:var(--warn); }
.ev.shadow line { stroke:#98a2b3; } .ev.shadow text { fill:var(--muted); }
.dots circle { opacity:0; } .dots circle:hover { opacity:1; }
.series.off { display:none; }
.legend { display:flex; flex-wrap:wrap; gap:6px 14px; margin:2px 0 2px 70px; font-size:13px; }
.legend .key { border:0; background:none; padding:0; font:inherit; color:inherit; cursor:pointer; }
.legend .key.off { opacity:.35; text-decoration:line-through; }
.legend i, .sw { display:inline-block; width:14px; height:4px; vertical-align:middle;
  margin-right:5px; border-radius:2px; }
.legend small { color:var(--muted); }
.legend.markers { margin-left:0; } .mk i { height:12px; width:3px; }
.mk.rollback i { background:var(--bad); } .mk.promote i { background:var(--good); }
.mk.canary i { background:var(--live); } .mk.hold i { background:var(--warn); }
table { border-collapse:collapse; width:100%; margin:4px 0 10px; font-size:13px; }
th, td { text-align:left; padding:4px 8px; border-bottom:1px solid #eaecf0; vertical-align:top; }
th { background:var(--panel); font-weight:600; }
tr.bad td:first-child { box-shadow:inset 3px 0 var(--bad); }
tr.good td:first-child { box-shadow:inset 3px 0 var(--good); }
td.reason { color:#475467; max-width:420px; }
b.good { color:var(--good); } b.bad { color:var(--bad); }
.state { font-weight:500; padding:1px 6px; border-radius:8px; background:var(--panel); }
.state.production { color:var(--good); } .state.rolled_back, .state.rejected { color:var(--bad); }
.state.canary { color:var(--live); }
details summary { cursor:pointer; margin:6px 0; }
.lineage .colhead { text-anchor:middle; fill:var(--muted); font-size:12px; font-weight:600; }
.lineage .colnone { text-anchor:middle; fill:var(--muted); }
.lineage .edge { fill:none; stroke:#98a2b3; stroke-width:1.5; }
.lineage marker path { fill:#98a2b3; }
.node rect { fill:var(--panel); stroke:#98a2b3; stroke-width:1.2; }
.node .label { font-size:12px; font-weight:600; } .node .detail { fill:var(--muted); }
.node.good rect { stroke:var(--good); fill:#eef8f0; }
.node.bad rect { stroke:var(--bad); fill:#fdf0f0; }
.node.live rect { stroke:var(--live); fill:#eef4fc; } .node.muted rect { stroke:#c0c5ce; }
footer { margin:36px 0 10px; color:var(--muted); font-size:12px; }
@media print { details { display:block; } .legend .key { cursor:default; } }
"""

# Legend buttons hide or show a version on every chart. Then each chart records how many of
# its paths the browser laid out with a length and a size (data-drawn) and where it sits on
# the page (data-top, data-height): what a test in a headless browser reads back.
SCRIPT = """
(function () {
  document.querySelectorAll('.legend .key').forEach(function (key) {
    key.addEventListener('click', function () {
      var k = key.dataset.key, off = !key.classList.contains('off');
      document.querySelectorAll('[data-key="' + k + '"]').forEach(function (el) {
        el.classList.toggle('off', off);
      });
    });
  });
  var drawn = 0;
  document.querySelectorAll('svg[data-chart]').forEach(function (svg) {
    var n = 0;
    svg.querySelectorAll('path').forEach(function (p) {
      var box = p.getBBox(), length = p.getTotalLength();
      p.dataset.length = length.toFixed(1);
      if (p.closest('defs') === null && length > 0 && (box.width > 0 || box.height > 0)) n++;
    });
    var rect = svg.getBoundingClientRect();
    svg.dataset.drawn = String(n);
    svg.dataset.top = String(Math.round(rect.top + window.scrollY));
    svg.dataset.height = String(Math.round(rect.height));
    drawn += n;
  });
  document.body.dataset.drawn = String(drawn);
  document.body.dataset.height = String(document.documentElement.scrollHeight);
})();
"""
