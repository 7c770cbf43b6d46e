"""The static HTML report: well-formed, self-contained, and it opens in a real headless Chromium."""

import html.parser
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
    lb.write_leaderboard(results, results.parent / "leaderboard.md")
    return results


def test_report_is_well_formed_and_self_contained(rendered):
    text = (rendered / "report.html").read_text()
    p = _Parser()
    p.feed(text)
    assert p.stack == [] and p.scripts_with_src == [] and p.links == []  # no CDN, nothing to fetch
    assert "http://" not in text and "https://" not in text
    assert p.images and all((rendered / src).is_file() for src in p.images)
    assert text.count('class="sortable"') == 2 and "Records left out" in text and "stray.json" in text
    assert "drive_unet" in text and "01234567" in text  # per-row provenance: record id and commit


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
    order = re.findall(r"<td>(unet|swin_unetr)</td>", first)
    assert order == ["unet", "swin_unetr"]  # ascending Dice after one click (the table starts best first)
    assert 'class="sorted-asc"' in first or "sorted-asc" in dom.split("<tbody>")[0]
