"""Known-answer shapes for the metric tests (2D and 3D)."""

from __future__ import annotations

import numpy as np


def ring(n: int = 21, r_out: float = 8, r_in: float = 4) -> np.ndarray:
    """Annulus: β = (1, 1)."""
    y, x = np.mgrid[:n, :n] - n // 2
    d = np.hypot(y, x)
    return (d <= r_out) & (d > r_in)


def solid_torus(n: int = 25, big_r: float = 7, small_r: float = 2.5) -> np.ndarray:
    """Solid torus: β = (1, 1, 0)."""
    z, y, x = np.mgrid[:n, :n, :n] - n // 2
    return (np.hypot(np.hypot(y, x) - big_r, z)) <= small_r


def hollow_sphere(n: int = 21, r_out: float = 8, r_in: float = 5) -> np.ndarray:
    """Spherical shell: β = (1, 0, 1)."""
    z, y, x = np.mgrid[:n, :n, :n] - n // 2
    d = np.sqrt(x**2 + y**2 + z**2)
    return (d <= r_out) & (d > r_in)


def crossing_vessels_2d(n: int = 32, width: int = 3) -> np.ndarray:
    """Two straight vessels crossing in a plus: β = (1, 0)."""
    m = np.zeros((n, n), bool)
    c = n // 2
    m[c - width // 2 : c + width // 2 + 1, 2:-2] = True
    m[2:-2, c - width // 2 : c + width // 2 + 1] = True
    return m


def vessel_3d(n: int = 24, radius: float = 2.0) -> np.ndarray:
    """One straight tube along the first axis: β = (1, 0, 0)."""
    z, y, x = np.mgrid[:n, :n, :n] - n // 2
    m = np.hypot(y, x) <= radius
    m[:2] = False
    m[-2:] = False
    return m
