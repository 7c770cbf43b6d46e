"""Claims of papers checked on the committed records, and README's "What the tables say" generated
from them (``python -m bench.leaderboard.claims results --readme [--write README.md]``).

The claims are declared as data in :mod:`bench.leaderboard.claim_specs` (``CLAIMS``: the paper,
what it claims, the metrics, the comparison and the tables); the verdict follows the numbers by
the fixed rule of ``RULES``
(agree / disagree / cannot tell at this budget / n too small), computed by
:mod:`bench.leaderboard.claim_stats`. Every number in the section comes from the records;
``tests/bench/leaderboard/test_readme_claims.py`` fails when README and the records disagree.

The paired loss comparison of one dataset stays available as before: ``python -m
bench.leaderboard.claims RESULTS --dataset D --base L1 --other L2`` (:func:`paired_losses`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.leaderboard.claim_specs import CLAIMS, RULES, FamilyClaim, HumanClaim, LossClaim, SeedClaim
from bench.leaderboard.claim_stats import (
    ALPHA,
    MARGIN,
    degenerate_text,
    interval_text,
    one_sided_p,
    paired_losses,
    run_mean,
    runs_by_model,
    table_name,
    train_runs,
    unit_means,
    units_text,
    verdict,
)
from bench.leaderboard.convergence import SLOPE_PER_1K, row_convergence
from bench.leaderboard.degenerate import ConstantReferences, load_references, row_degeneracy
from bench.leaderboard.format import fmt_params
from bench.leaderboard.stats import holm
from bench.leaderboard.wilcoxon import signed_rank_p
from bench.metrics.registry import higher_is_better, is_metric
from bench.records.record import Record
from bench.records.store import DEFAULT_RESULTS, load_records

__all__ = ["CLAIMS", "RULES", "paired_losses", "readme_section", "verdict", "main"]

DEFAULT_METRICS = ("dice", "cldice", "betti0_err", "betti1_err", "hd95")
BEGIN, END = "<!-- claims:begin -->", "<!-- claims:end -->"
NAMES = {"dice": "Dice", "cldice": "clDice", "betti0_err": "Betti-0 error", "betti1_err": "Betti-1 error"}
POINTS = ("dice", "cldice")  # metrics in [0, 1] quoted in points (x 100)


# ---- text ----------------------------------------------------------------------------------


def _q(v: float, metric: str, sign: bool = False) -> str:
    """A value as the section quotes it: points for Dice-like metrics, 3 significant digits else."""
    if metric in POINTS:
        return f"{v * 100:{'+' if sign else ''}.1f} points"
    return f"{v:{'+' if sign else ''}.3g}"


def _p(p: float) -> str:
    return f"{p:.1g}" if p < 0.01 else f"{p:.2g}"


def loss_claim_text(claim: LossClaim, records: Sequence[Record]) -> list[str]:
    """One line per comparison of a :class:`LossClaim`: per metric the count, median and verdict."""
    metrics = tuple(m for m, _ in claim.expects)
    out = []
    refs = load_references(records)
    for sweep, base, other in claim.comparisons:
        recs = [r for r in train_runs(records, sweep) if r.loss_name in (base, other)]
        dataset = recs[0].dataset.get("name", sweep) if recs else sweep
        dropped = {d.run_id for d in row_degeneracy(recs, refs).runs}
        result = paired_losses([r for r in recs if r.run_id not in dropped], dataset, base, other, metrics)
        s, per = result["summary"], result["per_model"]
        raw = []
        for m, direction in claim.expects:
            d = np.array([per[k][m] for k in per if np.isfinite(per[k][m])])
            if direction == "similar":
                good = d if higher_is_better(m) else -d
                raw.append((one_sided_p(good + MARGIN), one_sided_p(-(good + MARGIN))))
            else:
                raw.append((s[m]["wilcoxon_p"], s[m]["wilcoxon_p"]))
        adj_for = holm([a for a, _ in raw])
        adj_against = holm([b for _, b in raw])
        parts = []
        for (m, direction), pf, pa in zip(claim.expects, adj_for, adj_against, strict=True):
            n, med = s[m]["models"], s[m]["median_diff"]
            if direction == "similar":
                towards = pf < ALPHA
                p_adj = pf if towards else pa
                lower = (med < 0) if higher_is_better(m) else (med > 0)
                word = "lower" if lower else "higher"
                count = n - s[m]["improved"] if lower else s[m]["improved"]
            else:
                want_lower = direction == "lower"
                towards = (med < 0) == want_lower
                p_adj = pf
                word = "lower" if med < 0 else "higher"
                count = sum(1 for k in per if (per[k][m] < 0) == (med < 0) and per[k][m] != 0)
            v = verdict(p_adj, towards, n, len(claim.expects))
            parts.append(
                f"{NAMES[m]} {word} for {count} of {n} models (median {_q(med, m, True)}, "
                f"Holm p = {_p(p_adj)}): **{v}**"
            )
        left_out = f" ({_plural(len(dropped), 'degenerate run')} left out)" if dropped else ""
        out.append(f"  - {sweep}, `{other}` vs `{base}`{left_out}: " + "; ".join(parts) + ".")
    out += [line for c in claim.converged for line in converged_loss_text(claim, c, records, refs)]
    return out


def converged_loss_text(
    claim: LossClaim,
    comparison: tuple[Any, str, str, str],
    records: Sequence[Record],
    refs: ConstantReferences | None = None,
) -> list[str]:
    """The line of one converged comparison ``(table, model, base, other)`` of a :class:`LossClaim`:
    the two rows' means per metric, the paired test over the table's test units (seed means per
    unit, degenerate runs left out), and what the budget and sizes allow one to conclude. ``refs``:
    the constant baselines of ``records`` when the caller has them (:func:`load_references`)."""
    table, model, base, other = comparison
    refs = load_references(records) if refs is None else refs
    runs = [r for r in train_runs(records, table) if r.model_name == model]
    dropped = {d.run_id for d in row_degeneracy(runs, refs).runs}
    rows = {
        loss: [r for r in runs if r.loss_name == loss and r.run_id not in dropped] for loss in (base, other)
    }
    if not rows[base] or not rows[other]:
        return []
    tests = []
    for m, direction in claim.expects:
        ub, uo = unit_means(rows[base], m), unit_means(rows[other], m)
        common = sorted(set(ub) & set(uo))
        d = np.array([uo[c] - ub[c] for c in common])
        if direction == "similar":
            good = d if higher_is_better(m) else -d  # > 0: the other loss is better
            tests.append((one_sided_p(good + MARGIN), one_sided_p(-(good + MARGIN)), len(common)))
        else:  # two-sided; the direction is read from the means
            p = signed_rank_p(d)
            tests.append((p, p, len(common)))
    adj_for, adj_against = holm([t[0] for t in tests]), holm([t[1] for t in tests])
    parts, verdicts = [], []
    for (m, direction), pf, pa, (_, _, n) in zip(claim.expects, adj_for, adj_against, tests, strict=True):
        mb = float(np.mean([run_mean(r, m) for r in rows[base]]))
        mo = float(np.mean([run_mean(r, m) for r in rows[other]]))
        if direction == "similar":
            good = (mo - mb) if higher_is_better(m) else (mb - mo)
            towards = pf < ALPHA or (pa >= ALPHA and good > -MARGIN)
            p_adj = pf if pf < ALPHA or pa >= ALPHA else pa
        else:
            towards = (mo < mb) == (direction == "lower")
            p_adj = pf
        v = verdict(p_adj, towards, n, len(claim.expects))
        word = "lower" if mo < mb else "higher"
        if direction == "similar":
            word = f"{_q(mo - mb, m, True)}, {'within' if good > -MARGIN else 'beyond'} the margin"
        verdicts.append((m, word, towards, v))
        parts.append(f"{NAMES[m]} {_q(mo, m)} vs {_q(mb, m)} ({word}, Holm p = {_p(p_adj)}): **{v}**")
    n = min(t[2] for t in tests)
    unit = units_text(rows[base], n)
    left_out = f", {_plural(len(dropped), 'degenerate run')} left out" if dropped else ""
    seeds = f"{len(rows[other])} + {len(rows[base])} seeds"
    return [
        f"  - {table_name(table)} (long-budget table), `{model}` `{other}` vs `{base}` ({seeds}{left_out}), "
        f"paired over {unit}: "
        + "; ".join(parts)
        + ". "
        + scope_text(rows, n, unit, len(claim.expects))
        + " "
        + _conclusion(verdicts)
    ]


def scope_text(rows: dict[str, list[Record]], n: int, unit: str, m: int) -> str:
    """What a converged comparison stands on, from its runs: the budget, each row's size and
    learning-curve verdict, and how small a Holm-adjusted p its ``n`` units can reach over ``m`` tests
    (``m / 2^n``: the exact signed-rank test's one-sided floor; a two-sided test's is twice that)."""
    budget = _steps_text([r for v in rows.values() for r in v])
    sizes = ", ".join(f"{k} {fmt_params(v[0].params)}" for k, v in rows.items())
    curves = []
    for k, v in rows.items():
        c = row_convergence([r.val_trace for r in v])
        curves.append(f"{k} {c.status} ({c.slope:+.4f} per 1,000 steps)" if c.judged else f"{k} unknown")
    floor = min(1.0, m / 2.0**n)  # Holm's first step times the exact one-sided floor 1 / 2^n
    reach = f"with {unit} no Holm-adjusted p over {_plural(m, 'test')} can fall below {floor:.3g}" + (
        f" (≥ α = {ALPHA}: no test on this table can be significant)" if floor >= ALPHA else ""
    )
    return (
        f"Scope: {budget}; sizes {sizes} (the trained networks, not the papers' configurations); "
        f"validation curves (threshold {SLOPE_PER_1K:g} per 1,000 steps): {', '.join(curves)}; {reach}."
    )


def _conclusion(verdicts: list[tuple[str, str, bool, str]]) -> str:
    """The sentence a long-budget comparison allows from its ``(what, change, towards the claim,
    verdict)`` tests: the significant findings, else the directions only."""
    sig = [(what, v) for what, _, _, v in verdicts if v in ("agree", "disagree")]
    if sig:
        said = "; ".join(f"{NAMES.get(what, what)}: {v}s with the claim" for what, v in sig)
        return f"What it allows: at this budget and these sizes, {said}."
    dirs = ", ".join(
        f"{NAMES.get(what, what)} {word} ({'as claimed' if towards else 'against the claim'})"
        for what, word, towards, _ in verdicts
    )
    return f"What it allows: directions at this budget and these sizes, not a significant difference: {dirs}."


def family_claim_text(claim: FamilyClaim, records: Sequence[Record]) -> list[str]:
    """One line per sweep of a :class:`FamilyClaim`: the table's verdict, each row's interval, each pair."""
    out = []
    m = claim.metric
    refs = load_references(records)
    for sweep in claim.sweeps:
        rows = runs_by_model(train_runs(records, sweep, claim.loss))
        pairs = [(a, b) for a in claim.family for b in claim.others if a in rows and b in rows]
        if not pairs:
            continue
        tests = []
        for a, b in pairs:
            ca, cb = unit_means(rows[a], m), unit_means(rows[b], m)
            common = sorted(set(ca) & set(cb))
            d = np.array([ca[c] - cb[c] for c in common])
            d = d if higher_is_better(m) else -d
            tests.append((float(np.mean(d)), signed_rank_p(d), len(common)))
        adj = holm([p for _, p, _ in tests])
        verdicts = [verdict(p, diff > 0, n, len(pairs)) for (diff, _, n), p in zip(tests, adj, strict=True)]
        table = (
            "disagree"
            if "disagree" in verdicts
            else "agree"
            if "agree" in verdicts
            else verdicts[0]
            if all(v.startswith("n too small") for v in verdicts)
            else "cannot tell"
        )
        names = sorted({x for p in pairs for x in p})
        means = ", ".join(f"{x} {interval_text(rows[x], m)}" for x in names)
        deg = [f"{x} {degenerate_text(rows[x], refs)}" for x in names if row_degeneracy(rows[x], refs).runs]
        if deg:
            means += f" (degenerate runs: {', '.join(deg)})"
        detail = "; ".join(
            f"{a} − {b} {_q(diff, m, True)} (Holm p = {_p(p)}, {v})"
            for (a, b), (diff, _, _), p, v in zip(pairs, tests, adj, verdicts, strict=True)
        )
        units = units_text(rows[pairs[0][0]], tests[0][2])
        line = (
            f"  - {table_name(sweep)} ({NAMES[m]}, `{claim.loss}`): **{table}**. Means: {means}. Pairs over "
            f"{units}: {detail}."
        )
        if not isinstance(sweep, str):  # a long-budget table: what its budget and sizes allow
            n = min(t[2] for t in tests)
            # "match or beat": a pair less than the margin behind is a match, as the loss claims'
            # "similar" reads it
            said = [
                (
                    f"{a} − {b}",
                    _q(diff, m, True) + ("" if diff > 0 else ", within the margin" if diff > -MARGIN else ""),
                    diff > -MARGIN,
                    v,
                )
                for (a, b), (diff, _, _), v in zip(pairs, tests, verdicts, strict=True)
            ]
            scope = scope_text({x: rows[x] for x in names}, n, units_text(rows[pairs[0][0]], n), len(pairs))
            line += " " + scope + " " + _conclusion(said)
        out.append(line)
    return out


def seed_claim_text(claim: SeedClaim, records: Sequence[Record]) -> list[str]:
    """One line per sweep of a :class:`SeedClaim`: seed standard deviations against neighbour gaps,
    degenerate runs left out (as the loss claims leave them out)."""
    out = []
    m = claim.metric
    refs = load_references(records)
    for sweep in claim.sweeps:
        runs = train_runs(records, sweep, claim.loss)
        dropped = {d.run_id for d in row_degeneracy(runs, refs).runs}  # a collapse is no seed's spread
        rows = runs_by_model([r for r in runs if r.run_id not in dropped])
        sds = {k: float(np.std([run_mean(r, m) for r in v], ddof=1)) for k, v in rows.items() if len(v) > 1}
        if len(sds) < 2:
            continue
        means = sorted(float(np.mean([run_mean(r, m) for r in v])) for v in rows.values())
        gap = float(np.median(np.diff(means)))
        sd = float(np.median(list(sds.values())))
        lo, hi = min(sds, key=sds.get), max(sds, key=sds.get)
        word = "agree" if sd >= gap else "disagree"
        left_out = f", {_plural(len(dropped), 'degenerate run')} left out" if dropped else ""
        out.append(
            f"  - {table_name(sweep)} (`{claim.loss}`, {len(sds)} rows{left_out}): the seed standard "
            f"deviation of a row's mean {NAMES[m]} has a median of {_q(sd, m)} ({_q(sds[lo], m)} for {lo} to "
            f"{_q(sds[hi], m)} for {hi}); neighbouring rows differ by a median of {_q(gap, m)}: **{word}**."
        )
    return out


def human_claim_text(claim: HumanClaim, records: Sequence[Record]) -> list[str]:
    """The lines of a :class:`HumanClaim`: the human baseline against the best trained row of its
    sweep and of each of its tables."""
    human = [r for r in records if r.baseline == "human" and r.dataset.get("name") == claim.sweep]
    if not human:
        return []
    key = claim.metrics[0]
    hm = {m: run_mean(human[0], m) for m in claim.metrics}
    hc = unit_means(human, key)
    out = []
    for table in (claim.sweep, *claim.tables):
        rows: dict[tuple[str, str], list[Record]] = defaultdict(list)
        for r in train_runs(records, table):
            if r.dataset.get("name") == claim.sweep:
                rows[(r.model_name, r.loss_name)].append(r)
        if not rows:
            continue
        best, loss = max(rows, key=lambda k: np.mean([run_mean(r, key) for r in rows[k]]))
        runs = rows[(best, loss)]
        bm = {m: float(np.mean([run_mean(r, m) for r in runs])) for m in claim.metrics}
        bc = unit_means(runs, key)
        common = sorted(set(hc) & set(bc))
        d = np.array([hc[c] - bc[c] for c in common])
        p = signed_rank_p(d if higher_is_better(key) else -d)
        v = verdict(p, float(np.mean(d)) * (1 if higher_is_better(key) else -1) > 0, len(common), 1)
        scores = ", ".join(f"{NAMES[m]} {hm[m]:.3g} vs {bm[m]:.3g}" for m in claim.metrics)
        where = claim.sweep if table == claim.sweep else f"{claim.sweep} ({table_name(table)})"
        steps = _join(r.config["trainer"].get("max_steps") for r in runs)
        out.append(
            f"  - {where}: `{human[0].method}` against the first annotator vs the best row by mean "
            f"{NAMES[key]} ({best}, `{loss}`, {len(runs)} runs of {steps} steps): {scores}; {NAMES[key]} "
            f"paired over {units_text(runs, len(common))}, p = {_p(p)}: **{v}**."
        )
    return out


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _square(patch: Any) -> str:
    if isinstance(patch, (list, tuple)) and len(set(patch)) == 1:
        return f"{patch[0]}{'²' if len(patch) == 2 else '³' if len(patch) == 3 else f'^{len(patch)}'}"
    return "×".join(map(str, patch)) if isinstance(patch, (list, tuple)) else str(patch)


def _join(values: Iterable[Any]) -> str:
    return " / ".join(sorted({str(v) for v in values}))


def _steps_text(runs: Sequence[Record]) -> str:
    """The runs' training budget: ``10000 steps × 4 patches of 96²`` (values that differ joined by ``/``)."""
    return (
        f"{_join(r.config['trainer'].get('max_steps') for r in runs)} steps × "
        f"{_join(r.config['data'].get('batch_size') for r in runs)} patches of "
        f"{_join(_square(r.config['data'].get('patch_size')) for r in runs)}"
    )


def _device_text(record: Record) -> str:
    """What a run computed on, as its record states it: the GPU's name (``device.gpu``) for a run
    on an accelerator, else ``CPU, N torch thread(s)`` (:attr:`Record.torch_threads`)."""
    if record.gpu:
        return record.gpu
    n = record.torch_threads
    return f"CPU, {n} torch thread{'' if n == 1 else 's'}" if n is not None else "CPU, threads not recorded"


def tables_text(records: Sequence[Record]) -> list[str]:
    """The table facts: one line per sweep and dataset (a sweep over several datasets gets a line
    for each) with its runs, budget, seeds, test set, device (GPU or CPU threads) and degenerate runs
    (:func:`bench.leaderboard.degenerate.row_degeneracy` over those runs)."""
    refs = load_references(records)
    sweeps = sorted({str(r.config.get("sweep")) for r in records if r.kind == "train" and r.done})
    lines = [
        "| dataset (sweep) | runs | models × losses | seeds | budget | test set | device | degenerate runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    parts = [
        (sweep, [r for r in train_runs(records, sweep) if r.dataset.get("name") == name])
        for sweep in sweeps
        for name in sorted({str(r.dataset.get("name")) for r in train_runs(records, sweep)})
    ]
    for sweep, runs in parts:
        models, losses = {r.model_name for r in runs}, {r.loss_name for r in runs}
        budget = ", ".join(
            (
                _steps_text(runs),
                f"{_join(r.config['optim'].get('optimizer') for r in runs)} "
                f"{_join(r.config['optim'].get('lr') for r in runs)} "
                f"{_join(r.config['optim'].get('scheduler') for r in runs)}",
            )
        )
        sizes = _join(len(r.cases) for r in runs)
        same = len({tuple(sorted(r.case_values("dice"))) for r in runs}) == 1
        source = _join(r.split.get("test_source") for r in runs)
        devices = Counter(_device_text(r) for r in runs)
        thread_text = "; ".join(f"{d}: {_plural(n, 'run')}" for d, n in sorted(devices.items()))
        lines.append(
            f"| {runs[0].dataset.get('name')} ({sweep}) | {len(runs)} | {len(models)} × {len(losses)} | "
            f"{_join(r.seed for r in runs)} | {budget} | {sizes} cases, `{source}`"
            f"{', the same for every run' if same else ', per run'} | {thread_text} | "
            f"{degenerate_text(runs, refs)} |"
        )
    return lines


def readme_section(records: Sequence[Record]) -> str:
    """The Markdown between :data:`BEGIN` and :data:`END` (markers included)."""
    train = [r for r in records if r.kind == "train" and r.done]
    studies = sum(1 for r in records if "study" in r.extra)
    lines = [
        BEGIN,
        "<!-- generated by `python -m bench.leaderboard.claims results --readme` from results/; "
        "tests/bench/leaderboard/test_readme_claims.py ties it to the records -->",
        "",
        f"`leaderboard.md` renders the {len(train)} finished training runs under `results/` (and the "
        "evaluations of baselines), one table per dataset and setting; each table's legend states "
        f"its interval and its test. {_plural(studies, 'record')} came "
        "from a tuning study: no hyperparameter was chosen on a test split. "
        "`test_source` is where the records say the test cases came from (`official`: the "
        "dataset's fixed split; `held_out`: held out by the split seed). `device` is the GPU a run "
        "trained on, else the CPU and its torch thread count, `Record.torch_threads` (schema-2 "
        "records stored it as `device.cpu_count`).",
        "",
        *tables_text(records),
        "",
        RULES,
        "",
    ]
    for claim in CLAIMS:
        lines.append(f"- **{claim.title} ({claim.source}).**")
        if isinstance(claim, LossClaim):
            lines += loss_claim_text(claim, records)
        elif isinstance(claim, FamilyClaim):
            lines += family_claim_text(claim, records)
        elif isinstance(claim, SeedClaim):
            lines += seed_claim_text(claim, records)
        else:
            lines += human_claim_text(claim, records)
    lines.append(END)
    return "\n".join(lines)


def readme_span(text: str) -> str:
    """The part of ``text`` from :data:`BEGIN` to :data:`END` (markers included)."""
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    return text[start:stop]


def write_readme(path: Path, section: str) -> None:
    """Replace the generated span of ``path`` with ``section``."""
    text = path.read_text()
    path.write_text(text.replace(readme_span(text), section))


def render(result: dict[str, Any]) -> str:
    """A markdown table of the summary."""
    lines = [
        f"{result['dataset']}: {result['other']} vs {result['base']} (other - base, seed means, per model)",
        "",
        "| metric | models | improved by the other loss | median difference | Wilcoxon p |",
        "|---|---|---|---|---|",
    ]
    for m, s in result["summary"].items():
        lines.append(
            f"| {m} | {s['models']} | {s['improved']} | {s['median_diff']:+.4g} | {s['wilcoxon_p']:.2g} |"
        )
    return "\n".join(lines)


def _check_choice(records: list[Record], dataset: str, base: str, other: str) -> str:
    """Why ``--dataset`` / ``--base`` / ``--other`` cannot be compared in ``records`` ("" when they can),
    naming what the records do hold."""
    done = [r for r in records if r.kind == "train" and r.done]
    datasets = sorted({str(r.dataset.get("name")) for r in done})
    if not done:
        return "the folder holds no finished training run"
    if dataset not in datasets:
        return f"--dataset {dataset!r}: no finished run; the records hold {', '.join(datasets)}"
    losses = sorted({r.loss_name for r in done if r.dataset.get("name") == dataset})
    for flag, loss in (("--base", base), ("--other", other)):
        if loss not in losses:
            return f"{flag} {loss!r}: no finished run on {dataset}; its losses are {', '.join(losses)}"
    if base == other:
        return f"--base and --other are both {base!r}"
    return ""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.leaderboard.claims", description=__doc__.splitlines()[0]
    )
    p.add_argument(
        "results", nargs="?", default=DEFAULT_RESULTS, help="folder of records (default: %(default)s/)"
    )
    p.add_argument("--dataset", default="synthetic_vessels")
    p.add_argument("--base", default="dice")
    p.add_argument("--other", default="dice+cldice")
    p.add_argument("--metric", action="append", help="metric keys (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the per-model differences as json")
    p.add_argument("--readme", action="store_true", help="print README's generated section")
    p.add_argument("--write", type=Path, help="with --readme: replace the section in this file")
    args = p.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"python -m bench.leaderboard.claims: error: {args.results}: no such folder", file=sys.stderr)
        return 2
    records = load_records(Path(args.results))[0]
    if args.readme:
        section = readme_section(records)
        if args.write:
            write_readme(args.write, section)
        else:
            print(section)
        return 0
    problem = _check_choice(records, args.dataset, args.base, args.other)
    if problem:
        print(f"python -m bench.leaderboard.claims: error: {problem}", file=sys.stderr)
        return 2
    metrics = tuple(args.metric or DEFAULT_METRICS)
    unknown = [m for m in metrics if not is_metric(m)]
    if unknown:
        print(
            f"python -m bench.leaderboard.claims: error: --metric {unknown[0]!r}: not a metric",
            file=sys.stderr,
        )
        return 2
    result = paired_losses(records, args.dataset, args.base, args.other, metrics)
    print(json.dumps(result, indent=1) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
