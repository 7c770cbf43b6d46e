"""The claims of papers that README's "What the tables say" checks, declared as data, and the rule
that turns their tests into words (:data:`RULES`). :mod:`bench.leaderboard.claims` computes and
writes them."""

from __future__ import annotations

from dataclasses import dataclass

from bench.leaderboard.claim_stats import ALPHA, MARGIN, Table


@dataclass(frozen=True)
class LossClaim:
    """A loss ``other`` changes ``metrics`` against ``base`` in the claimed ``direction`` (``lower``,
    ``higher`` or ``similar``: not worse by more than :data:`MARGIN`), paired across models, on
    each ``(sweep, base, other)``; and on each ``converged`` ``(table, model, base, other)``: one
    model's two rows of a converged table, paired over its test units (cases or case groups)."""

    title: str
    source: str
    expects: tuple[tuple[str, str], ...]
    comparisons: tuple[tuple[str, str, str], ...]
    converged: tuple[tuple[Table, str, str, str], ...] = ()


@dataclass(frozen=True)
class FamilyClaim:
    """Models of ``family`` score ``metric`` at least as well as those of ``others`` when trained
    alike (``loss``), each pair compared on the test cases, on each sweep."""

    title: str
    source: str
    metric: str
    loss: str
    family: tuple[str, ...]
    others: tuple[str, ...]
    sweeps: tuple[Table, ...]  # a tuple entry: a converged table (its line says its budget and sizes)


@dataclass(frozen=True)
class SeedClaim:
    """The seed spread of a row's mean ``metric`` is of the order of the gaps between neighbouring
    rows (trained with ``loss``)."""

    title: str
    source: str
    metric: str
    loss: str
    sweeps: tuple[Table, ...]


@dataclass(frozen=True)
class HumanClaim:
    """The best trained row of ``sweep`` (by mean ``metrics[0]``) scores below the human baseline
    of the dataset of that name; so does the best row of each of ``tables`` (of the same dataset)."""

    title: str
    source: str
    sweep: str
    metrics: tuple[str, ...]
    tables: tuple[Table, ...] = ()


CHASE_LONG = ("chase_db1_long", "chase_db1_long_claims")
"""CHASE_DB1's converged table: 10,000 steps, 5 seeds (the two sweeps share its settings)."""

CLAIMS = (
    LossClaim(
        "clDice loss lowers Betti errors at similar Dice",
        "Shit et al., CVPR 2021",
        (("betti0_err", "lower"), ("betti1_err", "lower"), ("dice", "similar")),
        (
            ("synthetic_vessels", "dice", "dice+cldice"),
            ("synthetic_vessels", "dice", "dice+cldice_skel"),
            ("chase_db1", "dice_ce", "dice_ce+cldice"),
            ("msd_hippocampus", "dice_ce", "dice_ce+cldice"),
        ),
        converged=(
            (CHASE_LONG, "unet", "dice_ce", "dice_ce+cldice"),
            (CHASE_LONG, "resenc_unet", "dice_ce", "dice_ce+cldice"),
        ),
    ),
    FamilyClaim(
        "CNN U-Nets (residual encoder or plain) match or beat transformer, Mamba and xLSTM models "
        "under equal training",
        "Isensee et al., MICCAI 2024",
        "dice",
        "dice_ce",
        ("resenc_unet", "unet"),
        ("swin_unetr", "umamba_bot", "xlstm_unet"),
        ("synthetic_vessels", "chase_db1", "msd_hippocampus", CHASE_LONG),
    ),
    SeedClaim(
        "The seed spread is of the order of the differences between models",
        "nnU-Net issue threads, about one Dice point",
        "dice",
        "dice_ce",
        ("synthetic_vessels", "chase_db1", "msd_hippocampus", CHASE_LONG),
    ),
    HumanClaim(
        "The models stand below the second annotator",
        "human baseline",
        "chase_db1",
        ("dice", "cldice", "betti0_err", "betti1_err"),
        tables=(CHASE_LONG,),
    ),
)

RULES = (
    f"A test agrees when it is significant at α = {ALPHA} in the claimed direction, disagrees when it is "
    "significant in the other direction, and cannot tell otherwise; it says *n too small* when even "
    "the most extreme outcome could not reach α with its n after the correction. Loss claims pair the "
    "seed-mean difference per model and test it with Wilcoxon's signed-rank test over the models, Holm "
    "over the claim's metrics on that table, leaving out degenerate runs (`bench.leaderboard.degenerate`: "
    "topology errors reward empty and full masks) and so their seed's pair; a *similar* metric agrees "
    "when the one-sided test of "
    f"difference > -{MARGIN:g} is significant (not worse by more than {MARGIN * 100:g} point) and "
    f"disagrees when the one-sided test of difference < -{MARGIN:g} is. Model-family claims pair the "
    "seed-mean values per test "
    "case (Wilcoxon over the cases, Holm over the table's pairs); a table agrees when no pair goes "
    "against the claim and at least one is significant for it, disagrees when any pair goes against "
    "it. The seed-spread claim agrees when the median seed standard deviation of the rows' means is at "
    "least the median gap between neighbouring rows. On a converged table one model's two loss rows "
    "are paired per test unit (the seed-mean per case, or per case group), Holm over the claim's "
    "metrics, as the model-family pairs are; each converged line ends with its budget, sizes and "
    "learning curves and what they allow one to conclude: the significant findings, else each test's "
    f"direction (a model-family pair less than the {MARGIN * 100:g}-point margin behind counts as a "
    "match). Intervals are "
    "`bench.leaderboard.intervals.mean_interval` (crossed seed × case)."
)
