"""Channels-last against the default layout for nnU-Net's 3D nets: ``segbench bench layout``.

segbench builds nnU-Net's 3D conv nets (``nnunet_plain``, ``nnunet_resenc``) with channels-last
weights (:class:`models.layers.nnunet.NnUNetNet`). For each net at the ``small`` preset and the
Hippocampus plan, one training step (forward with deep-supervision outputs, ``mean(logits)``
backward, as ``segbench bench models``) on a random batch of 2 at the plan's 40×56×40 patch is
timed in that layout and in a contiguous copy of the same weights (the reference, measured in the
same run). The two alternate ``--repeats`` times after a warm-up step each, and the best of each is
compared (the machine's noise only ever slows a step down). The ratio is reference time over
channels-last time: above 1, channels-last is faster.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from bench.perf.models import _step

_NETS = ("nnunet_plain", "nnunet_resenc")
_PATCH = (40, 56, 40)


def _best_step_seconds(nets: dict[str, torch.nn.Module], x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Best time of one training step per net, the nets alternating ``repeats`` times."""
    for net in nets.values():
        _step(net, x)  # warm-up (oneDNN primitive creation)
    best = dict.fromkeys(nets, float("inf"))
    for _ in range(repeats):
        for key, net in nets.items():
            t0 = time.perf_counter()
            _step(net, x)
            best[key] = min(best[key], time.perf_counter() - t0)
    return best


def compare(name: str, patch: tuple[int, ...], batch: int, repeats: int) -> dict[str, float]:
    """Seconds per step of ``name`` as built (channels-last) and as a contiguous copy, and their ratio."""
    from models import create_model

    built = create_model(
        name, spatial_dims=3, in_channels=1, out_channels=3, preset="small", plan="hippocampus"
    )
    built.train()
    reference = copy.deepcopy(built).to(memory_format=torch.contiguous_format)
    x = torch.randn(batch, 1, *patch)
    best = _best_step_seconds({"channels_last": built, "contiguous": reference}, x, repeats)
    return {**best, "ratio": best["contiguous"] / best["channels_last"]}


def main(argv: list[str] | None = None) -> int:
    """``segbench bench layout``: print one line per net; the exit code (0)."""
    p = argparse.ArgumentParser(prog="segbench bench layout", description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="*", default=list(_NETS), choices=_NETS)
    p.add_argument("--patch", nargs=3, type=int, default=list(_PATCH), help="3D patch (default: 40 56 40)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10, help="alternating timed steps per net")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the long sweeps)")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.batch < 1 or args.threads < 1:
        p.error("--repeats, --batch and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    for name in args.nets:
        r = compare(name, tuple(args.patch), args.batch, args.repeats)
        print(
            f"{name} small, batch {args.batch} x {'x'.join(map(str, args.patch))}, {args.threads} thread(s): "
            f"channels-last {r['channels_last']:.3f} s / step, contiguous {r['contiguous']:.3f} s "
            f"(best of {args.repeats}) -> {r['ratio']:.2f}x",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
