"""The claims on a long-budget table (several sweeps sharing one leaderboard table): one model's two
loss rows paired per test case, and a line that states the budget, the sizes, the learning curves and
what they allow one to conclude. Expected numbers are computed here by hand from the per-case values."""

from __future__ import annotations

import numpy as np
import pytest

from bench.config import run_from_dict
from bench.leaderboard import claims
from bench.leaderboard.claim_specs import FamilyClaim, LossClaim
from bench.records.record import Record

CASES = [f"{i:02d}_test" for i in range(1, 9)]  # DRIVE-like ids: no case groups, 8 paired units
TABLE = ("long_a", "long_b")
FLAT = [[s, 0.8, 0.1] for s in range(0, 10001, 500)]
RISING = [[s, 0.5 + 0.00003 * s, 0.1] for s in range(0, 10001, 500)]  # +0.03 per 1,000 steps


def record(model, loss, seed, dice, betti0, *, sweep="long_a", trace=FLAT, params=400_000):
    cfg = run_from_dict(
        {
            "dataset": {"name": "drive", "kwargs": {}},
            "model": {"name": model, "kwargs": {}},
            "loss": {"name": loss},
            "seed": seed,
            "sweep": sweep,
            "trainer": {"max_steps": 10000},
            "data": {"batch_size": 4, "patch_size": [96, 96]},
        }
    ).to_dict()
    cases = [
        {"case_id": c, "dice": float(d), "betti0_err": float(b), "betti1_err": 1.0}
        for c, d, b in zip(CASES, dice, betti0, strict=True)
    ]
    return Record.from_dict(
        {
            "schema": 2,
            "kind": "train",
            "run_id": f"{model}-{loss}-s{seed}",
            "status": "done",
            "config": cfg,
            "cases": cases,
            "params": params,
            "steps": 10000,
            "val_trace": trace,
            "device": {"accelerator": "cpu", "cpu_count": 1},
        }
    )


CLAIM = LossClaim(
    "clDice lowers Betti errors at similar Dice",
    "test",
    (("betti0_err", "lower"), ("dice", "similar")),
    (),
    converged=((TABLE, "unet", "dice_ce", "dice_ce+cldice"),),
)


def loss_records(
    betti_shift: float, *, sweep_b: str = "long_b", trace=FLAT, dice_shift: float = 0.0
) -> list[Record]:
    base = np.linspace(10.0, 17.0, 8)
    dice = np.linspace(0.75, 0.82, 8)
    recs = [record("unet", "dice_ce", s, dice + 0.001 * s, base + s, trace=trace) for s in range(2)]
    recs += [
        record(
            "unet",
            "dice_ce+cldice",
            s,
            dice + 0.001 * s + dice_shift,
            base + s + betti_shift + 0.1 * np.arange(8),
            sweep=sweep_b,
        )
        for s in range(2)
    ]
    return recs


def test_the_line_pairs_the_two_rows_per_case_over_both_sweeps():
    (line,) = claims.converged_loss_text(CLAIM, CLAIM.converged[0], loss_records(-5.0))
    # by hand: each row's mean over its runs of the runs' case means
    base_b0 = np.mean([np.mean(np.linspace(10.0, 17.0, 8) + s) for s in range(2)])
    other_b0 = np.mean([np.mean(np.linspace(10.0, 17.0, 8) + s - 5.0 + 0.1 * np.arange(8)) for s in range(2)])
    assert f"Betti-0 error {other_b0:.3g} vs {base_b0:.3g} (lower" in line
    assert line.startswith("  - long_a + long_b (long-budget table), `unet` `dice_ce+cldice` vs `dice_ce`")
    assert "(2 + 2 seeds), paired over 8 cases" in line
    # 8 cases, all lower: exact two-sided p = 2/2^8; identical Dice: the one-sided test of
    # difference > -0.01 has p = 1/2^8. Holm over the 2: 2 x 1/256 = 1/128, then max(1/128, 2/256)
    assert "(lower, Holm p = 0.008): **agree**" in line
    assert (
        "Dice 78.5 points vs 78.5 points (+0.0 points, within the margin, Holm p = 0.008): **agree**" in line
    )
    assert "Scope: 10000 steps × 4 patches of 96²; sizes dice_ce 0.40 M, dice_ce+cldice 0.40 M" in line
    assert "with 8 cases no Holm-adjusted p over 2 tests can fall below 0.00781." in line
    assert "What it allows: at this budget and these sizes, Betti-0 error: agrees with the claim" in line


def test_the_verdict_turns_when_the_effect_turns():
    (line,) = claims.converged_loss_text(CLAIM, CLAIM.converged[0], loss_records(+5.0))
    assert "(higher, Holm p = 0.008): **disagree**" in line
    assert "Betti-0 error: disagrees with the claim" in line


def test_dice_lower_by_more_than_the_margin_disagrees_with_similar():
    (line,) = claims.converged_loss_text(CLAIM, CLAIM.converged[0], loss_records(-5.0, dice_shift=-0.03))
    # every case 3 points lower: the one-sided test of difference < -0.01 has p = 1/2^8 (Holm: 2/256)
    assert (
        "Dice 75.5 points vs 78.5 points (-3.0 points, beyond the margin, Holm p = 0.008): **disagree**"
        in line
    )
    assert "Dice: disagrees with the claim" in line


def test_only_the_table_s_sweeps_count():
    # the other loss's runs in a sweep outside the table: no pair, no line
    assert claims.converged_loss_text(CLAIM, CLAIM.converged[0], loss_records(-5.0, sweep_b="short")) == []


def test_a_rising_curve_is_named_and_too_few_units_say_so():
    recs = [r for r in loss_records(-5.0, trace=RISING)]
    (line,) = claims.converged_loss_text(CLAIM, CLAIM.converged[0], recs)
    assert "dice_ce not converged (+0.0300 per 1,000 steps)" in line
    assert "dice_ce+cldice converged (+0.0000 per 1,000 steps)" in line
    four = [Record.from_dict({**r.to_dict(), "cases": r.to_dict()["cases"][:4]}) for r in recs]
    (short,) = claims.converged_loss_text(CLAIM, CLAIM.converged[0], four)
    assert "no Holm-adjusted p over 2 tests can fall below 0.125 (≥ α = 0.05" in short
    assert "**n too small (n = 4)**" in short
    assert (
        "What it allows: directions at this budget and these sizes, not a significant difference: " in short
    )
    assert "Betti-0 error lower (as claimed)" in short


@pytest.mark.parametrize(("shift", "verdict"), [(0.05, "agrees"), (-0.05, "disagrees")])
def test_a_family_line_on_a_long_table_says_its_scope(shift: float, verdict: str):
    claim = FamilyClaim("CNNs match", "test", "dice", "dice_ce", ("unet",), ("umamba_bot",), (TABLE,))
    dice = np.linspace(0.7, 0.8, 8)
    recs = [record("unet", "dice_ce", s, dice + shift, np.ones(8)) for s in range(2)]
    recs += [
        record("umamba_bot", "dice_ce", s, dice, np.ones(8), sweep="long_b", params=620_000) for s in range(2)
    ]
    (line,) = claims.family_claim_text(claim, recs)
    assert line.startswith("  - long_a + long_b (Dice, `dice_ce`)")
    assert "sizes umamba_bot 0.62 M, unet 0.40 M" in line
    assert f"unet − umamba_bot {shift * 100:+.1f} points" in line
    # 8 cases, each 5 points apart: p = 2/2^8, significant either way
    assert (
        f"What it allows: at this budget and these sizes, unet − umamba_bot: {verdict} with the claim."
        in line
    )


@pytest.mark.parametrize(
    ("shift", "words"),
    [
        (0.02, "+2.0 points (as claimed)"),
        (-0.005, "-0.5 points, within the margin (as claimed)"),  # less than 1 point behind: a match
        (-0.03, "-3.0 points (against the claim)"),
    ],
)
def test_a_family_line_without_significance_gives_directions_with_the_margin(shift: float, words: str):
    claim = FamilyClaim("CNNs match", "test", "dice", "dice_ce", ("unet",), ("umamba_bot",), (TABLE,))
    four = CASES[:4]
    dice = np.linspace(0.7, 0.8, 4)

    def cut(r: Record) -> Record:
        return Record.from_dict(
            {**r.to_dict(), "cases": [c for c in r.to_dict()["cases"] if c["case_id"] in four]}
        )

    recs = [cut(record("unet", "dice_ce", 0, np.r_[dice + shift, dice], np.ones(8)))]
    recs += [cut(record("umamba_bot", "dice_ce", 0, np.r_[dice, dice], np.ones(8), sweep="long_b"))]
    (line,) = claims.family_claim_text(claim, recs)
    assert "not a significant difference: unet − umamba_bot " + words in line


def test_the_human_line_reads_the_long_table_beside_the_short_sweep():
    from bench.leaderboard.claim_specs import HumanClaim

    human = Record.from_dict(
        {
            "schema": 3,
            "kind": "evaluation",
            "run_id": "eval__drive__2nd",
            "status": "done",
            "config": {"dataset": {"name": "drive", "kwargs": {}}, "method": "second annotator (2nd)"},
            "method": "second annotator (2nd)",
            "baseline": "human",
            "cases": [{"case_id": c, "dice": 0.8, "betti0_err": 1.0} for c in CASES],
        }
    )
    short = [record("unet", "dice_ce", s, np.full(8, 0.6), np.full(8, 50.0), sweep="drive") for s in range(2)]
    long = [record("unet", "dice_ce", s, np.full(8, 0.81), np.full(8, 90.0)) for s in range(3)]
    long += [record("umamba_bot", "dice_ce", 0, np.full(8, 0.7), np.full(8, 9.0), sweep="long_b")]
    claim = HumanClaim("below the annotator", "test", "drive", ("dice", "betti0_err"), tables=(TABLE,))
    first, second = claims.human_claim_text(claim, [human, *short, *long])
    assert (
        first.startswith("  - drive: `second annotator (2nd)`")
        and "(unet, `dice_ce`, 2 runs of 10000" in first
    )
    assert "Dice 0.8 vs 0.6, Betti-0 error 1 vs 50" in first
    # the long table's best row by Dice (unet 0.81, not umamba_bot 0.70) is above the annotator
    assert second.startswith("  - drive (long_a + long_b): `second annotator (2nd)`")
    assert "(unet, `dice_ce`, 3 runs of 10000 steps): Dice 0.8 vs 0.81, Betti-0 error 1 vs 90" in second
    # 8 cases all 1 point above the human: two-sided p = 2/2^8, against the claim
    assert "Dice paired over 8 cases, p = 0.008: **disagree**." in second
