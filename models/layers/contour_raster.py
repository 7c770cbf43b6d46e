"""Differentiable rasterisation of closed contours (polygons) into soft masks and logits.

Each closed contour is turned into a signed distance field on the pixel grid: the distance to
its nearest edge (differentiable in the vertices) with a positive sign inside (even-odd
crossing test, piecewise constant) and a negative sign outside. ``sigmoid(sd / temperature)`` is
a soft point-in-polygon mask, so pixel losses (Dice, cross-entropy) move the vertices.

Coordinates follow the landmark convention of the chest X-ray data: ``(x, y)`` normalised to
``[0, 1]`` with pixel ``(row i, col j)`` centred at ``((j + 0.5) / W, (i + 0.5) / H)`` — the
``align_corners=False`` convention of ``F.grid_sample``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Logit of a class that no contour draws (finite, so no loss turns it into NaN).
_ABSENT_LOGIT = -1e4
_EPS = 1e-8
# Pixels per block when searching the nearest edge (bounds the memory of large images).
_PIXEL_CHUNK = 16384


def _pixel_centres(shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(H * W, 2)`` pixel centres ``(x, y)`` in pixel units, raster order."""
    h, w = shape
    ys = torch.arange(h, device=device, dtype=dtype) + 0.5
    xs = torch.arange(w, device=device, dtype=dtype) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], dim=-1)


def _segment_distance2(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared distance from points ``p`` to segments ``a``-``b`` (broadcast, last dim ``(x, y)``)."""
    ab, ap = b - a, p - a
    t = ((ap * ab).sum(-1) / ((ab * ab).sum(-1) + _EPS)).clamp(0, 1)
    return (ap - t[..., None] * ab).pow(2).sum(-1)


@torch.no_grad()
def _nearest_edge_and_inside(
    p: torch.Tensor, a: torch.Tensor, b: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest edge ``(B, P)`` and the even-odd inside test ``(B, P)`` bool,
    ``chunk`` pixels at a time (no autograd graph, so memory is ``O(B * chunk * V)``)."""
    idx, inside = [], []
    a_, b_ = a[:, None], b[:, None]  # (B, 1, V, 2)
    for start in range(0, p.shape[0], chunk):
        pc = p[start : start + chunk, None]  # (Pc, 1, 2)
        idx.append(_segment_distance2(pc, a_, b_).argmin(-1))
        px, py = pc[..., 0], pc[..., 1]  # a horizontal ray to +x crossing an odd number of edges
        ay, by = a_[..., 1], b_[..., 1]
        x_cross = a_[..., 0] + (py - ay) * (b_[..., 0] - a_[..., 0]) / (by - ay + _EPS)
        inside.append((((ay > py) != (by > py)) & (px < x_cross)).sum(-1) % 2 == 1)
    return torch.cat(idx, dim=1), torch.cat(inside, dim=1)


def polygon_signed_distance(
    vertices: torch.Tensor, shape: Sequence[int], chunk: int = _PIXEL_CHUNK
) -> torch.Tensor:
    """Signed distance (pixels, positive inside) from every pixel centre to one closed polygon.

    The nearest edge and the inside test are found without autograd; only the distance to the
    nearest edge keeps a graph, so memory for backward is ``O(B * H * W)`` (the gradient of a
    minimum flows to its argmin anyway).

    Args:
        vertices: ``(B, V, 2)`` polygon vertices ``(x, y)`` in ``[0, 1]`` image coordinates,
            in order along the contour (either orientation); the last joins the first.
        shape: ``(H, W)`` of the output grid.
        chunk: pixels per block of the edge search.

    Returns:
        ``(B, H, W)`` signed distances in pixel units.
    """
    h, w = shape
    a = vertices * vertices.new_tensor([w, h])  # (B, V, 2) in pixel units
    b = torch.roll(a, -1, dims=1)
    p = _pixel_centres(shape, vertices.device, vertices.dtype)  # (P, 2)
    idx, inside = _nearest_edge_and_inside(p, a.detach(), b.detach(), chunk)
    gather = idx[..., None].expand(-1, -1, 2)
    dist2 = _segment_distance2(p[None], a.gather(1, gather), b.gather(1, gather))  # (B, P)
    dist = torch.sqrt(dist2 + _EPS)
    return torch.where(inside, dist, -dist).view(-1, h, w)


def contours_to_logits(
    landmarks: torch.Tensor,
    contour_sizes: Sequence[int],
    contour_classes: Sequence[int],
    num_classes: int,
    shape: Sequence[int],
    temperature: float = 1.0,
) -> torch.Tensor:
    """Softmax logits of a label map drawn by closed contours.

    Background has logit 0 and class ``c`` the largest signed distance (pixels) over its
    contours divided by ``temperature``; for one class this is exactly the soft mask
    ``softmax = sigmoid(sd / temperature)``. A class without contours gets a very low logit.

    Args:
        landmarks: ``(B, N, 2)`` all contours' vertices concatenated, ``(x, y)`` in ``[0, 1]``.
        contour_sizes: vertices per contour (sums to ``N``).
        contour_classes: class index (``1 .. num_classes - 1``) drawn by each contour.
        num_classes: output channels incl. background.
        shape: ``(H, W)``.
        temperature: softness in pixels.

    Returns:
        ``(B, num_classes, H, W)`` logits.
    """
    b = landmarks.shape[0]
    per_class: dict[int, list[torch.Tensor]] = {}
    for verts, cls in zip(torch.split(landmarks, list(contour_sizes), dim=1), contour_classes):
        per_class.setdefault(int(cls), []).append(polygon_signed_distance(verts, shape))
    logits = [landmarks.new_zeros(b, *shape)]
    for cls in range(1, num_classes):
        if cls in per_class:
            logits.append(torch.stack(per_class[cls]).amax(0) / temperature)
        else:
            logits.append(landmarks.new_full((b, *shape), _ABSENT_LOGIT))
    return torch.stack(logits, dim=1)
