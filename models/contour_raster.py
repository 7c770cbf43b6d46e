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


def _pixel_centres(shape: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(H * W, 2)`` pixel centres ``(x, y)`` in pixel units, raster order."""
    h, w = shape
    ys = torch.arange(h, device=device, dtype=dtype) + 0.5
    xs = torch.arange(w, device=device, dtype=dtype) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.flatten(), gy.flatten()], dim=-1)


def polygon_signed_distance(vertices: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Signed distance (pixels, positive inside) from every pixel centre to one closed polygon.

    Args:
        vertices: ``(B, V, 2)`` polygon vertices ``(x, y)`` in ``[0, 1]`` image coordinates,
            in order along the contour (either orientation); the last joins the first.
        shape: ``(H, W)`` of the output grid.

    Returns:
        ``(B, H, W)`` signed distances in pixel units.
    """
    h, w = shape
    scale = vertices.new_tensor([w, h])
    a = vertices * scale  # (B, V, 2)
    b = torch.roll(a, -1, dims=1)
    p = _pixel_centres(shape, vertices.device, vertices.dtype)[None, :, None]  # (1, P, 1, 2)
    ab = (b - a)[:, None]  # (B, 1, V, 2)
    ap = p - a[:, None]  # (B, P, V, 2)
    t = ((ap * ab).sum(-1) / ((ab * ab).sum(-1) + _EPS)).clamp(0, 1)
    dist2 = (ap - t[..., None] * ab).pow(2).sum(-1).amin(-1)  # (B, P)
    dist = torch.sqrt(dist2 + _EPS)
    with torch.no_grad():  # even-odd rule: a horizontal ray to +x crosses an odd number of edges
        ay, by = a[:, None, :, 1], b[:, None, :, 1]
        px, py = p[..., 0], p[..., 1]
        straddle = (ay > py) != (by > py)
        x_cross = a[:, None, :, 0] + (py - ay) * (b[:, None, :, 0] - a[:, None, :, 0]) / (by - ay + _EPS)
        inside = (straddle & (px < x_cross)).sum(-1) % 2 == 1
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
