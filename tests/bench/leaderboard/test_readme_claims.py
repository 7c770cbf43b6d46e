"""README's "What the tables say" is generated from the committed records: the text between the
markers equals what ``python -m bench.leaderboard.claims --readme`` prints, and it changes when a
single per-case value of a record changes."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from bench.leaderboard import claims
from bench.records.record import Record
from bench.records.store import load_records

REPO = Path(__file__).resolve().parents[3]
RESULTS = REPO / "results"
README = REPO / "README.md"


@pytest.fixture(scope="module")
def records() -> list[Record]:
    return load_records(RESULTS)[0]


@pytest.fixture(scope="module")
def section(records: list[Record]) -> str:
    return claims.readme_section(records)


def _bumped(rec: Record, metric: str, by: float) -> Record:
    """A copy of ``rec`` with ``metric`` of its first case moved by ``by``."""
    data = copy.deepcopy(rec.to_dict())
    data["cases"][0][metric] += by
    return Record.from_dict(data)


def test_readme_section_is_the_generated_text(section: str):
    readme = README.read_text()
    assert claims.readme_span(readme) == section, (
        "README's 'What the tables say' differs from the records: run "
        "`python -m bench.leaderboard.claims results --readme --write README.md`"
    )


def test_every_claim_and_table_has_its_line(records: list[Record], section: str):
    sweeps = {r.config.get("sweep") for r in records if r.kind == "train"}
    assert all(f"({s}) |" in section for s in sweeps)
    for claim in claims.CLAIMS:
        assert f"**{claim.title} ({claim.source}).**" in section
    # the audit's facts (issue 23), re-derived: CHASE's test set is the official split, MSD's held out
    assert "| chase_db1 (chase_db1) | 42 |" in section and "8 cases, `official`" in section
    assert "52 cases, `held_out`" in section
    # the device cell: one count per CPU thread number and per GPU, summed over the lines
    train = [r for r in records if r.kind == "train" and r.done]
    cells = [line.split(" | ")[-2] for line in section.splitlines() if "cases, `" in line]

    def counted(label: str) -> int:
        parts = [part.rsplit(": ", 1) for c in cells for part in c.split("; ")]
        return sum(int(n.split(" ")[0]) for d, n in parts if d == label)

    ones = sum(1 for r in train if r.device.get("accelerator", "cpu") == "cpu" and r.torch_threads == 1)
    assert counted("CPU, 1 torch thread") == ones
    h200 = sum(1 for r in train if r.device.get("gpu") == "NVIDIA H200")
    assert h200 == 10 and counted("NVIDIA H200") == h200
    # the collapsed runs the audit found: 20 all-foreground synthetic-grid runs, 1 all-background MSD run
    assert "| 20 of 276 (all-foreground ×20) |" in section and "| 1 of 30 (all-background) |" in section
    # the seed-spread claim leaves the collapsed MSD Swin UNETR run out, as the loss claims do
    assert "msd_hippocampus (`dice_ce`, 5 rows, 1 degenerate run left out): the seed standard" in section


def test_a_changed_case_value_changes_the_text(records: list[Record], section: str):
    i = next(i for i, r in enumerate(records) if r.run_id.startswith("chase_db1__resenc_unet__dice_ce__s0"))
    changed = [*records[:i], _bumped(records[i], "dice", 0.2), *records[i + 1 :]]
    assert claims.readme_section(changed) != section


def test_generated_from_a_temp_copy_and_a_changed_file(tmp_path: Path, capsys: pytest.CaptureFixture):
    for f in RESULTS.glob("chase_db1__*.json"):
        shutil.copy(f, tmp_path / f.name)
    shutil.copy(next(RESULTS.glob("eval__chase-db1__*.json")), tmp_path)
    assert claims.main([str(tmp_path), "--readme"]) == 0
    before = capsys.readouterr().out
    assert "chase_db1 (chase_db1) | 42 |" in before and "second annotator" in before
    path = next(  # a run of the chase_db1 sweep, whose table the claims read (not chase_db1_long's)
        p
        for p in sorted(tmp_path.glob("chase_db1__unet__dice_ce__s1f0__*.json"))
        if json.loads(p.read_text())["config"].get("sweep") == "chase_db1"
    )
    data = json.loads(path.read_text())
    data["cases"][3]["dice"] -= 0.1
    path.write_text(json.dumps(data))
    assert claims.main([str(tmp_path), "--readme"]) == 0
    after = capsys.readouterr().out
    assert after != before
    # --write replaces only the span between the markers
    readme = tmp_path / "README.md"
    readme.write_text(f"# top\n\n{claims.BEGIN}\nold\n{claims.END}\n\n## next\n")
    assert claims.main([str(tmp_path), "--readme", "--write", str(readme)]) == 0
    assert readme.read_text() == f"# top\n\n{after.rstrip(chr(10))}\n\n## next\n"


@pytest.mark.parametrize(
    ("p", "towards", "n", "m", "expected"),
    [
        (0.01, True, 8, 1, "agree"),
        (0.01, False, 8, 1, "disagree"),
        (0.2, True, 8, 1, "cannot tell"),
        (0.01, True, 5, 1, "n too small (n = 5)"),  # 2 / 2**5 = 0.0625 >= 0.05
        (0.01, True, 8, 7, "n too small (n = 8)"),  # Holm over 7: 7 * 2 / 2**8 = 0.055
        (0.04, True, 8, 6, "agree"),  # 6 * 2 / 2**8 = 0.047
    ],
)
def test_verdict_rule(p: float, towards: bool, n: int, m: int, expected: str):
    assert claims.verdict(p, towards, n, m) == expected
