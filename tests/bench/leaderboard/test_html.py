"""The static HTML report: well-formed, self-contained, and it opens in a real headless Chromium."""

import html as htmlmod
import html.parser
import inspect
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import bench.leaderboard as lb
from bench.config import run_from_dict
from bench.leaderboard import html as report
from bench.records.store import write_json_atomic


def _records(results: Path) -> None:
    base = np.array([0.62, 0.71, 0.55, 0.80, 0.66, 0.74, 0.59, 0.69])
    for model, shift in (("unet", 0.0), ("swin_unetr", 0.1)):
        cfg = run_from_dict(
            {"dataset": {"name": "drive"}, "model": {"name": model}, "loss": {"name": "dice_ce"}}
        ).to_dict()
        cases = [{"case_id": f"c{i}", "dice": d + shift, "betti0_err": float(i)} for i, d in enumerate(base)]
        rec = {
            "schema": 2,
            "kind": "train",
            "run_id": f"drive_{model}",
            "status": "done",
            "config": cfg,
            "cases": cases,
            "params": 1000,
            "train_seconds": 2.0,
            "git": {"commit": "0123456789ab"},
        }
        write_json_atomic(results / f"{rec['run_id']}.json", rec)
    (results / "stray.json").write_text("[1, 2]")
    # what `segbench explain drive_unet --case c0 --sanity` writes (docs/explain.md)
    folder = results / "explain" / "drive_unet" / "c0"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((8, 16, 3), 200, np.uint8)).save(folder / "explain.png")
    info = {
        "case_id": "c0",
        "class": 1,
        "methods": {"integrated_gradients": {}, "gradcam": {}},
        "figure": "explain.png",
        "sanity": {"integrated_gradients": {"passed": True}, "gradcam": {"passed": False}},
    }
    (folder / "explain.json").write_text(json.dumps(info))


def all_pairs(fn) -> dict:
    """``all_pairs=True`` for ``fn`` where the leaderboard computes the all-pairs tests (the significance
    map, the pairs within training noise) only when asked."""
    return {"all_pairs": True} if "all_pairs" in inspect.signature(fn).parameters else {}


class _Parser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.images, self.scripts_with_src, self.links = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        elif tag == "script" and "src" in a:
            self.scripts_with_src.append(a["src"])
        elif tag == "link":
            self.links.append(a.get("href"))
        elif tag not in ("meta", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    results = tmp_path_factory.mktemp("report") / "results"
    _records(results)
    lb.write_leaderboard(results, results.parent / "leaderboard.md", **all_pairs(lb.write_leaderboard))
    return results


def test_report_is_well_formed_and_self_contained(rendered):
    text = (rendered / "report.html").read_text()
    p = _Parser()
    p.feed(text)
    assert p.stack == [] and p.scripts_with_src == [] and p.links == []  # no CDN, nothing to fetch
    assert "http://" not in text and "https://" not in text
    assert p.images and all((rendered / src).is_file() for src in p.images)
    # the summary, the topology group (betti0_err) and the ranking stability
    assert text.count('<table class="sortable') == 3 and "Records left out" in text and "stray.json" in text
    assert "drive_unet" in text and "01234567" in text  # per-row provenance: record id and commit
    assert "explain.json" not in text  # not a run record: never "left out"


def test_the_report_shows_the_saliency_maps_of_a_rows_run_with_the_sanity_verdicts(rendered):
    text = (rendered / "report.html").read_text()
    assert "<h3>Saliency maps</h3>" in text
    assert 'src="explain/drive_unet/c0/explain.png"' in text
    assert "unet / dice_ce: saliency of case c0, class 1" in text
    assert "randomisation check integrated_gradients: passed, gradcam: FAILED" in text


def test_html_escapes_names():
    (a,) = lb.analyse_records([_rec_named("<b>x</b>")], n_resamples=50)
    text = report.render_html([a], plots=False)
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text


def _rec_named(name):
    cfg = run_from_dict(
        {"dataset": {"name": "drive"}, "model": {"name": "unet"}, "loss": {"name": "dice_ce"}}
    ).to_dict()
    return {
        "kind": "evaluation",
        "run_id": "e",
        "status": "done",
        "method": name,
        "cases": [{"case_id": "a", "dice": 0.5}],
        "config": {"dataset": cfg["dataset"], "method": name, "eval": {}},
    }


def _chromium() -> str | None:
    env = os.environ.get("SEGBENCH_CHROMIUM")
    if env:
        found = shutil.which(env) or (env if Path(env).is_file() else None)
        assert found, (
            f"SEGBENCH_CHROMIUM={env} is set but no such binary exists (.ci/chromium.sh installs it)"
        )
        return found
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium installed and SEGBENCH_CHROMIUM unset (source .ci/chromium.sh)")


def open_in_chromium(binary: str, page: Path, screenshot: Path | None = None) -> dict:
    """Load ``page`` headless; returns the body's image/error counters and the console's errors."""
    args = [
        binary,
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--allow-file-access-from-files",
        "--virtual-time-budget=5000",
        "--enable-logging=stderr",
        "--v=0",
        f"--user-data-dir={page.parent / '.chromium'}",
    ]
    dom = subprocess.run([*args, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body([^>]*)>", dom.stdout)
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1))) if body else {}
    console = [
        ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln and ("Uncaught" in ln or "rror" in ln)
    ]
    if screenshot is not None:
        subprocess.run(
            [*args, f"--screenshot={screenshot}", "--window-size=1280,2400", page.as_uri()],
            capture_output=True,
            timeout=120,
            check=True,
        )
    return {"attrs": attrs, "console": console}


def test_report_opens_in_headless_chromium_with_every_image_and_no_error(rendered, tmp_path):
    binary = _chromium()
    shot = tmp_path / "report.png"
    got = open_in_chromium(binary, rendered / "report.html", shot)
    attrs = got["attrs"]
    assert attrs.get("ready") == "1", attrs
    assert int(attrs["images-total"]) >= 3 and attrs["images-loaded"] == attrs["images-total"], attrs
    assert attrs["errors"] == "0" and got["console"] == []
    with Image.open(shot) as im:
        arr = np.asarray(im.convert("L"))
    assert arr.shape == (2400, 1280) and arr.std() > 10  # something was drawn, not a blank page
    if os.environ.get("SEGBENCH_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["SEGBENCH_SCREENSHOT_DIR"]) / "report.png")


def test_the_chromium_check_catches_a_missing_image_and_a_script_error(tmp_path):
    binary = _chromium()
    page = tmp_path / "bad.html"
    page.write_text(
        report.render_html([], plots=False).replace(
            "<h1>", '<img src="plots/missing.png"><script>undefinedFunction();</script><h1>'
        )
    )
    got = open_in_chromium(binary, page)
    assert got["attrs"]["images-loaded"] == "0" and got["attrs"]["images-total"] == "1"
    assert int(got["attrs"]["errors"]) >= 2 and got["console"]


def test_clicking_a_header_sorts_the_table_in_chromium(rendered):
    binary = _chromium()
    page = rendered / "sorted.html"
    click = (
        "<script>window.addEventListener('load',function(){"
        "document.querySelector('table.sortable th:nth-child(4)').click();});</script></body>"
    )
    page.write_text((rendered / "report.html").read_text().replace("</body>", click))
    dom = subprocess.run(
        [binary, "--headless", "--disable-gpu", "--no-sandbox", "--virtual-time-budget=3000",
         f"--user-data-dir={rendered / '.chromium-sort'}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    first = dom.split("<tbody>")[1].split("</tbody>")[0]
    order = re.findall(r'<td class="name">(unet|swin_unetr)</td>', first)
    assert order == ["unet", "swin_unetr"]  # ascending Dice after one click (the table starts best first)
    assert 'class="sorted-asc"' in first or "sorted-asc" in dom.split("<tbody>")[0]


# ---- a wide, long table read at 1400 px (issue 24) -----------------------------------------------

WIDTH = 1400
SIXTEEN = [
    "dice",
    "dice_1",
    "iou",
    "iou_1",
    "cldice",
    "betti0_err",
    "betti1_err",
    "betti2_err",
    "betti0_err_patch",
    "betti1_err_patch",
    "hd95",
    "hd95_1",
    "nsd",
    "nsd_1",
    "ece",
    "brier",
]
LAYOUT_JS = """<script>window.addEventListener('load',function(){
  var W=window.innerWidth,out={width:W,page:document.documentElement.scrollWidth,tables:[],pairs:null};
  document.querySelectorAll('section.table table.sortable').forEach(function(t){
    var box=t.parentElement,heads=[];
    t.querySelectorAll('thead th').forEach(function(th){var r=th.getBoundingClientRect();
      heads.push({text:th.textContent.trim(),left:r.left,right:r.right,width:r.width});});
    out.tables.push({cls:t.className,group:t.getAttribute('data-group'),
      hidden:box.scrollWidth-box.clientWidth,right:t.getBoundingClientRect().right,heads:heads});});
  var d=document.querySelector('details.pairs');
  if(d){var ul=d.querySelector('ul');out.pairs={open:d.open,summary:d.querySelector('summary').textContent,
    height:d.getBoundingClientRect().height,listShown:ul?ul.checkVisibility():null,
    items:d.querySelectorAll('li').length};}
  document.title=JSON.stringify(out);});</script></body>"""
"""Writes the layout facts the test reads into the page's title (read back with --dump-dom)."""


def _wide_records(n_rows: int = 40) -> list[dict]:
    """``n_rows`` rows × 2 seeds × 12 cases with the 16 metric keys of :data:`SIXTEEN`; neighbouring
    rows lie within each other's training noise (so the pair list is long)."""
    rng = np.random.default_rng(0)
    base = np.linspace(0.6, 0.8, 12)
    recs = []
    for i in range(n_rows):
        for seed in (0, 1):
            cfg = run_from_dict(
                {
                    "dataset": {"name": "drive"},
                    "model": {"name": "unet", "kwargs": {"channels": [8, 16 + i]}},
                    "loss": {"name": "dice_ce"},
                    "seed": seed,
                }
            ).to_dict()
            shift = 0.002 * i + rng.normal(0, 0.01)
            vals = {m: np.clip(base + shift + rng.normal(0, 0.01, base.size), 0, 1) for m in SIXTEEN}
            for m in ("betti0_err", "betti1_err", "betti2_err", "hd95", "hd95_1"):
                vals[m] = vals[m] * 20
            cases = [{"case_id": f"c{k:02d}", **{m: float(v[k]) for m, v in vals.items()}} for k in range(12)]
            recs.append(
                {
                    "schema": 3,
                    "kind": "train",
                    "run_id": f"wide-{i}-{seed}",
                    "status": "done",
                    "config": cfg,
                    "cases": cases,
                    "params": 123456,
                    "train_seconds": 10.0,
                }
            )
    return recs


def test_a_report_of_many_rows_and_16_metrics_reads_at_1400_px_in_chromium(tmp_path):
    binary = _chromium()
    (a,) = lb.analyse_records(_wide_records(), n_resamples=30, **all_pairs(lb.analyse_records))
    assert len(a.ranked) == 40 and len(a.metrics) == len(SIXTEEN) >= 15
    page = tmp_path / "report.html"
    page.write_text(report.render_html([a], plots=False, results_name="wide"))
    shot = tmp_path / "report_1400.png"
    args = [binary, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
            "--virtual-time-budget=5000", f"--window-size={WIDTH},2400"]  # fmt: skip
    subprocess.run(
        [*args, f"--user-data-dir={tmp_path / '.shot'}", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    print(f"screenshot of the report at {WIDTH} px: {shot}")
    if os.environ.get("SEGBENCH_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(os.environ["SEGBENCH_SCREENSHOT_DIR"]) / "report_1400.png")
    with Image.open(shot) as im:
        arr = np.asarray(im.convert("L"))
    assert arr.shape == (2400, WIDTH) and arr.std() > 10  # drawn, not blank
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", LAYOUT_JS))
    dom = subprocess.run(
        [*args, f"--user-data-dir={tmp_path / '.dom'}", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    layout = json.loads(htmlmod.unescape(title.group(1)))
    assert layout["width"] == WIDTH and layout["page"] <= WIDTH, layout["page"]  # no page-wide scroller
    tables = [t for t in layout["tables"] if "stability" not in t["cls"]]
    groups = [t["group"] for t in tables if t["group"]]
    assert groups == ["overlap", "topology", "distance", "calibration"]
    seen = set()
    for t in tables:
        heads = [h["text"] for h in t["heads"]]
        assert heads[:4] == ["#", "model", "loss", "dice ↑"], heads  # rank, row and primary metric in each
        assert t["hidden"] <= 0 and t["right"] <= WIDTH, (t["group"], t["hidden"], t["right"])
        assert all(h["width"] > 0 and h["left"] >= 0 and h["right"] <= WIDTH for h in t["heads"]), t["heads"]
        seen |= {h.split(" ")[0] for h in heads[3:]}
    assert set(SIXTEEN) <= seen  # every metric on screen, none behind a scroller
    pairs = layout["pairs"]
    assert pairs is not None and pairs["open"] is False and pairs["listShown"] is False
    assert pairs["height"] < 40, pairs["height"]  # one line: the count, not the list
    assert (
        re.match(rf"{pairs['items']} pairs within training noise \(", pairs["summary"])
        and pairs["items"] > 40
    )
