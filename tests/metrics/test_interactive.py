"""Interactive protocol: the simulated click on hand-made masks (2D and 3D), click maps, NoC and
the seeded training-click sampler."""

from __future__ import annotations

import numpy as np
import pytest

from bench.metrics.interactive import click_maps, dice_after, next_click, noc, simulate_training_clicks


def test_false_negative_square_is_clicked_at_its_centre() -> None:
    g, p = np.zeros((12, 12), bool), np.zeros((12, 12), bool)
    g[3:8, 4:9] = True  # 5x5 square, centre (5, 6), fully missed
    assert next_click(p, g) == ((5, 6), True)


def test_false_negative_cube_3d_and_border_counts_as_boundary() -> None:
    g, p = np.zeros((7, 7, 7), bool), np.zeros((7, 7, 7), bool)
    g[1:6, 1:6, 1:6] = True
    assert next_click(p, g) == ((3, 3, 3), True)
    edge = np.zeros((6, 10), bool)
    edge[:, :5] = True  # touches the image border on three sides: border counts as boundary
    # padded EDT: column 2 is 3 from the left border pad and the right edge; rows 2..3 from top/bottom
    assert next_click(np.zeros_like(edge), edge) == ((2, 2), True)


def test_larger_error_region_wins_and_false_positive_is_negative() -> None:
    g = np.zeros((20, 20), bool)
    g[1:4, 1:4] = True  # 3x3 missed
    p = g.copy()
    p[1:4, 1:4] = False
    p[10:17, 10:17] = True  # 7x7 false positive, centre (13, 13)
    assert next_click(p, g) == ((13, 13), False)
    g2 = np.zeros((20, 20), bool)
    g2[10:17, 10:17] = True  # now the big one is missed and the small one a false positive
    p2 = np.zeros_like(g2)
    p2[1:4, 1:4] = True
    assert next_click(p2, g2) == ((13, 13), True)


def test_fn_and_fp_are_separate_components_and_ties_go_to_smallest_index() -> None:
    g, p = np.zeros((7, 8), bool), np.zeros((7, 8), bool)
    g[2:5, 1:4] = True  # FN 3x3 touching an FP 3x3: one error mask, two components
    p[2:5, 4:7] = True
    assert next_click(p, g) == ((3, 2), True)  # equal sizes: the FN's first voxel comes first
    p[2:5, 1:4], p[2:5, 4:7], g[2:5, 4:7] = True, False, True  # swap the roles
    g[2:5, 1:4] = False
    assert next_click(p, g) == ((3, 2), False)
    thin = np.zeros((6, 8), bool)
    thin[2:4, 1:4] = True  # 2x3: every voxel is at distance 1; the smallest flat index wins
    assert next_click(np.zeros_like(thin), thin) == ((2, 1), True)
    even = np.zeros((8, 8), bool)
    even[2:6, 2:6] = True  # 4x4: four centre voxels tie; smallest flat index (3, 3)
    assert next_click(np.zeros_like(even), even) == ((3, 3), True)


def test_no_error_and_fov() -> None:
    g = np.zeros((5, 5), bool)
    g[1:3, 1:3] = True
    assert next_click(g, g) is None
    p = g.copy()
    p[4, 4] = True
    fov = np.ones((5, 5), bool)
    fov[4, 4] = False
    assert next_click(p, g, fov=fov) is None
    assert next_click(p, g) == ((4, 4), False)


def test_click_maps_disks_by_hand() -> None:
    maps = click_maps([((5, 5), True), ((0, 0), False)], (11, 11), radius=2)
    assert maps.shape == (2, 11, 11) and maps.dtype == np.float32
    # radius 2 disk: |dx|,|dy| with dx²+dy² <= 4: 1 + 4 (d=1) + 4 (d=√2) + 4 (d=2) = 13 voxels
    assert maps[0].sum() == 13 and maps[0, 5, 7] == 1 and maps[0, 6, 7] == 0
    assert maps[1].sum() == 6  # the quarter disk at the corner: (0,0),(0,1),(0,2),(1,0),(1,1),(2,0)
    ball = click_maps([((2, 2, 2), False)], (5, 5, 5), radius=1)
    assert ball[0].sum() == 0 and ball[1].sum() == 7  # centre + 6 face neighbours
    assert click_maps([((1, 1), True)], (3, 3), radius=0)[0].sum() == 1


def test_noc_and_dice_after_on_hand_sequences() -> None:
    seq = [0.5, 0.8, 0.86, 0.91, 0.95]
    assert noc(seq, 0.85) == 3 and noc(seq, 0.90) == 4
    assert noc([0.1] * 20, 0.85) == 20 and noc([0.1, 0.2], 0.85, max_clicks=20) == 20
    assert noc([0.1] * 30 + [0.99], 0.85) == 20  # beyond the budget does not count
    assert noc([float("nan"), 0.9], 0.85) == 2
    assert dice_after(seq, 1) == 0.5 and dice_after(seq, 3) == 0.86
    with pytest.raises(ValueError):
        dice_after(seq, 6)


def _initial(seed: int, g: np.ndarray) -> list:
    return simulate_training_clicks(g, None, np.random.default_rng(seed), max_initial=4)


@pytest.mark.parametrize("shape", [(16, 16), (8, 8, 8)])
def test_seeded_sampler_is_deterministic_and_in_the_right_regions(shape: tuple[int, ...]) -> None:
    g = np.zeros(shape, bool)
    g[(slice(2, 6),) * len(shape)] = True
    a, b = _initial(3, g), _initial(3, g)
    assert a == b
    assert any(_initial(s, g) != a for s in range(4, 10))
    for seed in range(40):  # enough draws that U{1..4} and U{0..4} reach their ends
        clicks = _initial(seed, g)
        pos = [c for c, positive in clicks if positive]
        neg = [c for c, positive in clicks if not positive]
        assert 1 <= len(pos) <= 4 and len(neg) <= 4 and len(set(pos)) == len(pos)
        assert all(g[c] for c in pos) and not any(g[c] for c in neg)
    assert simulate_training_clicks(g, g, np.random.default_rng(0)) == []


def test_training_error_clicks_lie_deep_in_the_largest_error_region() -> None:
    g = np.zeros((20, 20), bool)
    g[2:9, 2:9] = True  # 7x7 missed: distances 1..4 from its boundary, deeper than 2: the 3x3 core
    p = np.zeros_like(g)
    p[14:16, 14:16] = True  # a small false positive elsewhere
    seen = set()
    for seed in range(30):
        ((at, positive),) = simulate_training_clicks(g, p, np.random.default_rng(seed))
        assert positive and all(4 <= i <= 6 for i in at)
        seen.add(at)
    assert len(seen) > 1  # random, not always the centre
    assert simulate_training_clicks(g, p, np.random.default_rng(5)) == simulate_training_clicks(
        g, p, np.random.default_rng(5)
    )


def test_largest_component_beats_a_deeper_smaller_one() -> None:
    # where segbench differs from RITM's whole-mask rule: a 15-voxel thin false positive (depth 1)
    # against a 3x3 missed square (depth 2): the larger component is clicked, at its first voxel
    g, p = np.zeros((12, 20), bool), np.zeros((12, 20), bool)
    g[8:11, 2:5] = True
    p[2, 3:18] = True
    assert next_click(p, g) == ((2, 3), False)
