"""Rendering the leaderboard fast: the analysis cache (what invalidates an entry, what a damaged one
does, that a cached analysis is the computed one), figures and report drawn only when due, and the
benchmark script at tiny sizes. No test here times anything: speed is measured by
``segbench bench leaderboard`` (bench/perf/leaderboard.py), never by a timed test."""

import copy
import json
import pickle
import shutil
from pathlib import Path

import pytest

import bench.leaderboard as lb
from bench.leaderboard import board, cache
from bench.leaderboard.cache import CODE_FILES, AnalysisCache
from bench.perf import leaderboard as perf
from bench.records.record import Record
from bench.records.store import load_records, record_path, write_json_atomic

REPO = Path(__file__).resolve().parents[3]
N_RESAMPLES = 50


def records(n=28):
    """4 tables (drive, stare, hrf, synthetic_vessels), each a constant baseline and 2 rows of 3 seeds."""
    return perf.synthetic_records(n)


def analysed(recs, store=None, **kw):
    return lb.analyse_records(recs, n_resamples=N_RESAMPLES, cache=store, **kw)


@pytest.fixture
def computed(monkeypatch):
    """The labels of the tables analysed (not read back from the cache), in order."""
    labels = []
    real = board.analyse

    def spy(table, **kw):
        labels.append(table.label)
        return real(table, **kw)

    monkeypatch.setattr(board, "analyse", spy)
    return labels


def plain(analyses):
    return json.dumps([a.to_dict() for a in analyses])


def with_dice(recs, run_id, delta):
    out = copy.deepcopy(recs)
    rec = next(r for r in out if r["run_id"] == run_id)
    rec["cases"][0]["dice"] += delta
    return out


def train_id(recs, dataset):
    return next(
        r["run_id"] for r in recs if r["kind"] == "train" and r["config"]["dataset"]["name"] == dataset
    )


def test_a_changed_record_recomputes_its_table_and_no_other(tmp_path, computed):
    recs = records()
    first = analysed(recs, AnalysisCache(tmp_path))
    assert len(first) == 4 and len(computed) == 4
    store = AnalysisCache(tmp_path)
    analysed(recs, store)
    assert (store.hits, store.misses) == (4, 0) and len(computed) == 4
    changed = with_dice(recs, train_id(recs, "stare"), 0.01)
    after = analysed(changed, AnalysisCache(tmp_path))
    assert computed[4:] == [next(a.table.label for a in first if a.table.dataset == "stare")]

    def stare(analyses):
        return [a for a in analyses if a.table.dataset == "stare"]

    assert plain(stare(after)) == plain(stare(analysed(changed))) != plain(stare(first))


def test_a_changed_constant_baseline_recomputes_every_table_of_its_dataset(tmp_path, computed):
    # the baseline joins the drive table of its settings; drive runs with another NSD tolerance make a
    # second drive table that uses the same baseline to tell collapsed runs
    recs = records()
    for r in [r for r in recs if r["kind"] == "train" and r["config"]["dataset"]["name"] == "drive"][:3]:
        r["config"]["eval"]["nsd_tolerance"] = 2.0
    first = analysed(recs, AnalysisCache(tmp_path))
    drive = sorted(a.table.label for a in first if a.table.dataset == "drive")
    assert len(first) == 5 and len(drive) == 2 and len(computed) == 5
    baseline = next(r["run_id"] for r in recs if r.get("baseline") == "constant" and "drive" in r["run_id"])
    analysed(with_dice(recs, baseline, 0.01), AnalysisCache(tmp_path))
    assert sorted(computed[5:]) == drive


def test_other_options_are_other_entries(tmp_path, computed):
    recs = records()
    analysed(recs, AnalysisCache(tmp_path))
    pairs = analysed(recs, AnalysisCache(tmp_path), all_pairs=True)
    assert len(computed) == 8 and all(a.all_pairs and a.pairs for a in pairs if len(a.ranked) > 1)
    analysed(recs, AnalysisCache(tmp_path), equivalence_margin=0.01)
    analysed(recs, AnalysisCache(tmp_path), metrics=["cldice", "dice"])
    assert len(computed) == 16
    store = AnalysisCache(tmp_path)
    analysed(recs, store, all_pairs=True)
    assert (store.hits, store.misses) == (4, 0)  # each option set keeps its entries


def test_a_change_of_the_code_digest_recomputes_every_table(tmp_path, computed):
    recs = records()
    analysed(recs, AnalysisCache(tmp_path, code="one"))
    store = AnalysisCache(tmp_path, code="two")
    analysed(recs, store)
    assert (store.hits, store.misses) == (0, 4) and len(computed) == 8
    back = AnalysisCache(tmp_path, code="one")
    analysed(recs, back)
    assert (back.hits, back.misses) == (4, 0)


@pytest.mark.parametrize("source", ["bench/leaderboard/analysis.py", "bench/metrics/registry.py"])
def test_the_code_digest_changes_with_the_leaderboard_and_registry_source(tmp_path, source):
    for pattern in CODE_FILES:
        for path in REPO.glob(pattern):
            target = tmp_path / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    digest = cache.code_digest.__wrapped__  # the uncached function: files change within this test
    before = digest(CODE_FILES, tmp_path)
    assert digest(CODE_FILES, tmp_path) == before
    with open(tmp_path / source, "a") as fh:
        fh.write("\n# an edit\n")
    assert digest(CODE_FILES, tmp_path) != before


def test_the_registered_row_statistics_are_part_of_the_key(tmp_path, computed):
    from bench.leaderboard import stats

    recs = records()
    analysed(recs, AnalysisCache(tmp_path))

    @stats.row_statistic("speed_test_max")
    def speed_test_max(matrix):
        return float(matrix.max())

    try:
        again = analysed(recs, AnalysisCache(tmp_path))
    finally:
        del stats.ROW_STATISTICS["speed_test_max"]
    assert len(computed) == 8 and "speed_test_max" in again[0].row_stats[again[0].ranked[0].key]["dice"].extra


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"not a pickle",
        pickle.dumps({"format": cache.FORMAT, "key": "another key", "fields": {}}),
        pickle.dumps(["a", "list"]),
    ],
    ids=["empty", "garbage", "other-key", "other-object"],
)
def test_a_damaged_entry_is_recomputed_silently_and_replaced(tmp_path, computed, damage):
    recs = records()
    expected = plain(analysed(recs))
    analysed(recs, AnalysisCache(tmp_path))
    entries = sorted(tmp_path.glob("*.pkl"))
    assert len(entries) == 4
    for path in entries:
        path.write_bytes(damage)
    store = AnalysisCache(tmp_path)
    assert plain(analysed(recs, store)) == expected
    assert (store.hits, store.misses) == (0, 4) and len(computed) == 12
    store = AnalysisCache(tmp_path)
    analysed(recs, store)
    assert (store.hits, store.misses) == (4, 0)


def test_an_entry_that_fits_other_rows_is_not_trusted(tmp_path):
    recs = records()
    analysed(recs, AnalysisCache(tmp_path))
    for path in tmp_path.glob("*.pkl"):
        stored = pickle.loads(path.read_bytes())
        stored["row_keys"] = stored["row_keys"][::-1]
        path.write_bytes(pickle.dumps(stored))
    store = AnalysisCache(tmp_path)
    analysed(recs, store)
    assert store.hits == 0


def test_a_cached_analysis_is_the_computed_one(tmp_path):
    recs = records(40)
    uncached = analysed(recs)
    cold = analysed(recs, AnalysisCache(tmp_path))
    store = AnalysisCache(tmp_path)
    warm = analysed(recs, store)
    assert store.hits == 4
    assert plain(warm) == plain(cold) == plain(uncached)
    for fmt in lb.FORMATS:
        assert lb.render_analyses(warm, fmt) == lb.render_analyses(uncached, fmt)
    for a in warm:  # the rows are those of this render's tables, not copies
        assert all(a.role(r) == "ranked" for r in a.ranked) and a.table.rows
        assert all(any(r is row for row in a.table.rows) for r in a.rows)
        assert a.stability is a.metric_stability.get(a.primary)  # still one object (renderers ask)


def test_write_leaderboard_keeps_its_cache_in_the_results_folder(tmp_path, computed):
    res = write(tmp_path, records())
    lb.write_leaderboard(res, tmp_path / "lb.md", plots=False, report=False)
    lb.write_leaderboard(res, tmp_path / "lb.json", fmt="json", plots=False, report=False)
    assert len(computed) == 4 and len(list((res / ".cache" / "leaderboard").glob("*.pkl"))) == 4
    assert load_records(res)[1] == []  # the cache and the stamp are never read as records
    lb.write_leaderboard(res, tmp_path / "lb2.md", plots=False, report=False, cache=False)
    assert len(computed) == 8 and (tmp_path / "lb2.md").read_text() == (tmp_path / "lb.md").read_text()


def write(tmp_path, recs):
    res = tmp_path / "results"
    for r in recs:
        write_json_atomic(record_path(res, r["run_id"]), r)
    return res


@pytest.fixture
def drawing(monkeypatch):
    """Stand-ins for the figures and the report (files named as the real ones): what was drawn."""
    log = {"plots": 0, "report": []}

    def plots(analyses, results, workers=1):
        for a in analyses:
            for _, name in a.plot_names():
                path = Path(results) / "plots" / a.table.slug / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"png")
            a.plot_notes["reliability"] = "no row saved probabilities"
        log["plots"] += 1

    def report(analyses, results, *, problems=(), plots=True, results_name=None):
        (Path(results) / "report.html").write_text(f"report of {results_name}")
        log["report"].append(plots)

    monkeypatch.setattr(board, "render_plots", plots)
    monkeypatch.setattr(board, "write_report", report)
    return log


def test_figures_and_report_are_drawn_when_the_records_changed(tmp_path, drawing):
    recs = records()
    res, out = write(tmp_path, recs), tmp_path / "leaderboard.md"
    for fmt in ("csv", "json", "latex"):  # the exports never draw, due or not
        lb.write_leaderboard(res, tmp_path / f"leaderboard.{fmt}", fmt=fmt)
    assert drawing == {"plots": 0, "report": []}
    lb.write_leaderboard(res, out)
    first = out.read_text()
    assert drawing == {"plots": 1, "report": [True]}
    assert "](results/plots/" in first and "no row saved probabilities" in first
    lb.write_leaderboard(res, out)  # nothing changed: nothing drawn, the figures still linked
    assert drawing == {"plots": 1, "report": [True]} and out.read_text() == first
    lb.write_leaderboard(res, tmp_path / "leaderboard.csv", fmt="csv")
    assert drawing == {"plots": 1, "report": [True]}
    rid = train_id(recs, "hrf")
    changed = next(r for r in with_dice(recs, rid, 0.01) if r["run_id"] == rid)
    write_json_atomic(record_path(res, rid), changed)
    lb.write_leaderboard(res, out)
    assert drawing == {"plots": 2, "report": [True, True]}
    next((res / "plots").rglob("cases.png")).unlink()  # a figure went missing: drawn again
    lb.write_leaderboard(res, out)
    assert drawing == {"plots": 3, "report": [True, True]}
    (res / "report.html").unlink()  # so did the report
    lb.write_leaderboard(res, out)
    assert drawing == {"plots": 3, "report": [True, True, True]}


def test_true_and_false_force_the_figures_and_the_report(tmp_path, drawing):
    res, out = write(tmp_path, records()), tmp_path / "leaderboard.md"
    lb.write_leaderboard(res, out, plots=False, report=False)
    assert drawing == {"plots": 0, "report": []} and "](results/plots/" not in out.read_text()
    lb.write_leaderboard(res, tmp_path / "leaderboard.csv", fmt="csv", plots=True, report=True)
    assert drawing == {"plots": 1, "report": [True]}
    lb.write_leaderboard(res, out)  # drawn for these records already: only linked
    assert drawing == {"plots": 1, "report": [True]} and "](results/plots/" in out.read_text()
    lb.write_leaderboard(res, out, plots=True, report=True)
    assert drawing == {"plots": 2, "report": [True, True]}
    lb.write_leaderboard(res, out, plots=False, report=False)  # not drawn and not linked
    assert drawing == {"plots": 2, "report": [True, True]} and "](results/plots/" not in out.read_text()


def test_the_results_folder_is_named_as_given(tmp_path, drawing):
    res, out = write(tmp_path, records()), tmp_path / "leaderboard.md"
    lb.write_leaderboard(res, out, results_name="results")
    assert "from the run records under `results/`" in out.read_text()
    assert (res / "report.html").read_text() == "report of results"
    lb.write_leaderboard(res, out, results_name="runs/mine")  # another name: the report is due
    assert drawing == {"plots": 1, "report": [True, True]} and "under `runs/mine/`" in out.read_text()
    lb.write_leaderboard(res, out)
    assert "run records under" not in out.read_text()


def test_the_synthetic_records_are_records_of_four_tables(tmp_path):
    recs = records(100)
    res = write(tmp_path, recs)
    loaded, problems = load_records(res)
    assert problems == [] and len(loaded) == 100 and all(isinstance(r, Record) for r in loaded)
    analyses = analysed(loaded)
    assert sorted(a.table.dataset for a in analyses) == sorted(name for name, _ in perf.TABLES)
    for a in analyses:
        assert a.rank_metrics == list(lb.RANK_METRICS) and len(a.cases) == perf.CASES
        assert a.human == [] and all(len(r.done) <= perf.SEEDS for r in a.ranked)
    assert any(a.collapsed for a in analyses)  # every 25th row predicts all background
    assert all(a.baseline for a in analyses)  # each table's constant baseline


def test_the_benchmark_runs_at_tiny_sizes(tmp_path, capsys):
    out = tmp_path / "perf" / "leaderboard.json"
    assert perf.main(["--sizes", "6", "14", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["records"] for r in data["sizes"]] == [6, 14]
    assert all(r[k] > 0 for r in data["sizes"] for k in ("cold_s", "warm_s", "incremental_s"))
    assert data["ratios"]["cold_s"] == [
        {
            "from": 6,
            "to": 14,
            "records_ratio": 14 / 6,
            "time_ratio": data["sizes"][1]["cold_s"] / data["sizes"][0]["cold_s"],
        }
    ]
    printed = capsys.readouterr().out
    assert "| 6 | " in printed and "| 6 → 14 | 2.33 |" in printed and str(out) in printed
    with pytest.raises(SystemExit):
        perf.main(["--sizes", "0"])


def test_an_entry_under_another_keys_name_is_not_trusted(tmp_path):
    from bench.leaderboard.cache import AnalysisOptions, table_key
    from bench.leaderboard.degenerate import load_references
    from bench.leaderboard.rows import group_records

    recs = records()
    store = AnalysisCache(tmp_path)
    analysed(recs, store)  # without the all-pairs tests
    typed = [Record.from_dict(r) for r in recs]
    refs, options = load_references(typed), AnalysisOptions(n_resamples=N_RESAMPLES, all_pairs=True)
    for table in group_records(typed):
        (old,) = tmp_path.glob(store._path(table, "*").name)
        shutil.copy(old, store._path(table, table_key(table, options, refs, code=store.code)))
    store = AnalysisCache(tmp_path)
    assert all(a.all_pairs for a in analysed(recs, store, all_pairs=True)) and store.hits == 0
