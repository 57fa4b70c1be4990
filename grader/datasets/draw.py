"""Antialiased drawing of simple shapes into float RGB images (3, H, W) with values in [0, 1].

Coordinates are pixels, x to the right, y down; a pixel's centre is at (i + 0.5).
Each shape is evaluated only inside its bounding box, so drawing stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Box = tuple[slice, slice]
Colour = np.ndarray | Sequence[float]
Point = tuple[float, float]


def window(
    image: np.ndarray, x0: float, y0: float, x1: float, y1: float
) -> tuple[Box, np.ndarray, np.ndarray] | None:
    """The pixel box covering [x0, x1] x [y0, y1] and its pixel-centre coordinates (row, column)."""
    height, width = image.shape[-2:]
    c0, c1 = max(math.floor(x0), 0), min(math.ceil(x1), width)
    r0, r1 = max(math.floor(y0), 0), min(math.ceil(y1), height)
    if c0 >= c1 or r0 >= r1:
        return None
    xs = np.arange(c0, c1, dtype=np.float32)[None, :] + 0.5
    ys = np.arange(r0, r1, dtype=np.float32)[:, None] + 0.5
    return (slice(r0, r1), slice(c0, c1)), xs, ys


def blend(image: np.ndarray, box: Box, alpha: np.ndarray, colour: Colour) -> None:
    """Paint ``colour`` over ``image[:, box]`` with per-pixel opacity ``alpha`` (in place)."""
    region = image[:, box[0], box[1]]
    col = np.asarray(colour, dtype=np.float32)[:, None, None]
    region += (col - region) * alpha[None]


def local_coords(
    xs: np.ndarray, ys: np.ndarray, centre: Point, angle: float, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame centred at ``centre``, rotated by ``angle``, in ``scale`` units."""
    dx, dy = xs - centre[0], ys - centre[1]
    c, s = math.cos(angle), math.sin(angle)
    return (c * dx + s * dy) / scale, (c * dy - s * dx) / scale


def ellipse_coverage(
    image: np.ndarray, centre: Point, radii: Point, angle: float = 0.0, soft: float = 1.0
) -> tuple[Box, np.ndarray, np.ndarray, np.ndarray] | None:
    """Coverage of an ellipse (rotated by ``angle``) and the local coordinates in its box."""
    a, b = max(radii[0], 1e-3), max(radii[1], 1e-3)
    reach = max(a, b) + soft + 1.0
    win = window(image, centre[0] - reach, centre[1] - reach, centre[0] + reach, centre[1] + reach)
    if win is None:
        return None
    box, xs, ys = win
    u, v = local_coords(xs, ys, centre, angle)
    level = (u / a) ** 2 + (v / b) ** 2 - 1.0
    slope = 2.0 * np.sqrt((u / (a * a)) ** 2 + (v / (b * b)) ** 2) + 1e-6
    cover = np.clip(0.5 - level / slope / soft, 0.0, 1.0)
    return box, cover, u, v


def ellipse(
    image: np.ndarray,
    centre: Point,
    radii: Point,
    angle: float,
    colour: Colour,
    *,
    alpha: float = 1.0,
    soft: float = 1.0,
) -> None:
    """Draw a filled, rotated ellipse."""
    found = ellipse_coverage(image, centre, radii, angle, soft)
    if found is not None:
        box, cover, _, _ = found
        blend(image, box, cover * alpha, colour)


def polygon(
    image: np.ndarray, points: Sequence[Point], colour: Colour, *, alpha: float = 1.0
) -> None:
    """Draw a filled convex polygon."""
    pts = [(float(x), float(y)) for x, y in points]
    edges = list(zip(pts, pts[1:] + pts[:1], strict=True))
    if sum(p[0] * q[1] - q[0] * p[1] for p, q in edges) < 0:  # make the winding positive
        edges = [(q, p) for p, q in reversed(edges)]
    xs_, ys_ = [p[0] for p in pts], [p[1] for p in pts]
    win = window(image, min(xs_) - 1.0, min(ys_) - 1.0, max(xs_) + 1.0, max(ys_) + 1.0)
    if win is None:
        return
    box, xs, ys = win
    dist = np.full((ys.shape[0], xs.shape[1]), -np.inf, dtype=np.float32)
    for p, q in edges:
        ex, ey = q[0] - p[0], q[1] - p[1]
        norm = math.hypot(ex, ey)
        if norm < 1e-6:
            continue
        np.maximum(dist, (ey * (xs - p[0]) - ex * (ys - p[1])) / norm, out=dist)
    blend(image, box, np.clip(0.5 - dist, 0.0, 1.0) * alpha, colour)


def segment(
    image: np.ndarray, p0: Point, p1: Point, width: float, colour: Colour, *, alpha: float = 1.0
) -> None:
    """Draw a straight line of ``width`` pixels with round ends; thinner than 1 px fades."""
    half = max(width, 1.0) / 2.0
    win = window(
        image,
        min(p0[0], p1[0]) - half - 1,
        min(p0[1], p1[1]) - half - 1,
        max(p0[0], p1[0]) + half + 1,
        max(p0[1], p1[1]) + half + 1,
    )
    if win is None:
        return
    box, xs, ys = win
    bx, by = p1[0] - p0[0], p1[1] - p0[1]
    px, py = xs - p0[0], ys - p0[1]
    t = np.clip((px * bx + py * by) / max(bx * bx + by * by, 1e-9), 0.0, 1.0)
    dist = np.hypot(px - t * bx, py - t * by)
    cover = np.clip(half + 0.5 - dist, 0.0, 1.0) * min(width, 1.0)
    blend(image, box, cover * alpha, colour)
