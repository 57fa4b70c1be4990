"""A SYNTHETIC STAND-IN for the dogs-and-cats data: procedurally drawn animal faces.

No real photos can be downloaded here, so the demo draws them. The class is carried by
shape: a cat has pointed triangular ears, a narrower face, a small nose, slit pupils and
whiskers; a dog has floppy (sometimes pricked, rounded) ears, a wider face and a longer
muzzle with a big dark nose. Fur colour, coat pattern, position, size, tilt, background
clutter, occluders, lighting and noise vary and carry no class information. With more than
two classes each class ("breed") is a species plus a fixed coat pattern and ear variant.

Styles: ``plain`` (the ordinary distribution), ``augmented`` (plain images passed through
:func:`grader.datasets.augment.augment`) and ``shifted`` (other fur palettes, saturated and
textured backgrounds, wider scale and pose range, harsher lighting, more pricked-eared dogs;
harder). A spec's split draws one style from its own random ``stream``: two splits of one
style and different streams share a distribution but no image.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grader.datasets import draw
from grader.datasets.augment import augment

IMAGE_SIZE = 96
STYLES = ("plain", "augmented", "shifted")
STAND_IN_NOTE = (
    "This is a synthetic stand-in, not real photos: procedurally drawn cat and dog faces, "
    "because no real photos can be downloaded here; build from real image folders with "
    "`grader build-tests --source {name}=DIR`."
)
# The stream the kit and the demo train on; a spec's hidden splits name others.
TRAIN_STREAM = 11
# The augmentation of the "augmented" style is seeded apart from the drawing.
_AUG_SEED_OFFSET = 1_000_003
PATTERNS = ("plain", "striped", "spotted", "masked")

RGB = tuple[float, float, float]


@dataclass(frozen=True)
class Breed:
    """One class: a species, and for breeds also a fixed coat pattern and ear variant."""

    name: str
    species: str  # "cat" or "dog"
    pattern: str | None = None  # None: any pattern, as a nuisance
    variant: bool | None = None  # tufted cat ears / pricked dog ears; None: sometimes


def _breed(species: str, pattern: str, variant: bool) -> Breed:
    suffix = ("_tufted" if species == "cat" else "_pricked") if variant else ""
    return Breed(f"{species}_{pattern}{suffix}", species, pattern, variant)


_ALL_BREEDS = tuple(
    _breed(species, pattern, variant)
    for variant in (False, True)
    for pattern_pair in (
        ("plain", "plain"),
        ("striped", "spotted"),
        ("spotted", "masked"),
        ("masked", "striped"),
    )
    for species, pattern in zip(("cat", "dog"), pattern_pair, strict=True)
)
MAX_CLASSES = len(_ALL_BREEDS)


def breeds(num_classes: int = 2) -> tuple[Breed, ...]:
    """The classes in label order (sorted by name): cat/dog, or ``num_classes`` breeds."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes must lie in 2..{MAX_CLASSES}, got {num_classes}")
    if num_classes == 2:
        return (Breed("cat", "cat"), Breed("dog", "dog"))
    return tuple(sorted(_ALL_BREEDS[:num_classes], key=lambda b: b.name))


def class_names(num_classes: int = 2) -> tuple[str, ...]:
    """The class names in label order."""
    return tuple(b.name for b in breeds(num_classes))


# --------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class _Style:
    fur: tuple[RGB, ...]
    radius: tuple[float, float]  # head radius, pixels
    tilt: float  # largest head rotation, radians
    shift: float  # largest offset of the head from the image centre, pixels
    saturation: tuple[float, float]  # of background colours
    texture_p: float  # chance of a striped or checked background
    clutter: tuple[int, int]
    occluder_p: float
    pricked_dog_p: float
    tufted_cat_p: float
    brightness: tuple[float, float]
    contrast: tuple[float, float]
    light: float  # strength of a lighting gradient
    cast: float  # strength of a colour cast
    noise: tuple[float, float]  # sensor noise sigma, in [0, 1] units


_PLAIN_FUR: tuple[RGB, ...] = (
    (0.10, 0.09, 0.09),
    (0.30, 0.20, 0.13),
    (0.52, 0.36, 0.22),
    (0.85, 0.52, 0.22),
    (0.80, 0.66, 0.46),
    (0.93, 0.88, 0.78),
    (0.96, 0.96, 0.94),
    (0.52, 0.52, 0.54),
    (0.72, 0.72, 0.74),
)
_SHIFTED_FUR: tuple[RGB, ...] = (
    (0.42, 0.50, 0.66),
    (0.66, 0.58, 0.70),
    (0.70, 0.25, 0.15),
    (0.22, 0.12, 0.08),
    (0.95, 0.75, 0.30),
    (0.35, 0.36, 0.40),
    (0.55, 0.62, 0.45),
)
_PLAIN = _Style(
    fur=_PLAIN_FUR,
    radius=(17.0, 24.0),
    tilt=0.26,
    shift=10.0,
    saturation=(0.0, 0.3),
    texture_p=0.1,
    clutter=(2, 5),
    occluder_p=0.12,
    pricked_dog_p=0.15,
    tufted_cat_p=0.2,
    brightness=(0.85, 1.15),
    contrast=(0.85, 1.1),
    light=0.15,
    cast=0.04,
    noise=(0.01, 0.03),
)
_SHIFTED = _Style(
    fur=_SHIFTED_FUR,
    radius=(13.0, 30.0),
    tilt=0.7,
    shift=18.0,
    saturation=(0.45, 0.95),
    texture_p=0.6,
    clutter=(3, 8),
    occluder_p=0.3,
    pricked_dog_p=0.45,
    tufted_cat_p=0.1,
    brightness=(0.6, 1.3),
    contrast=(0.55, 0.95),
    light=0.35,
    cast=0.15,
    noise=(0.02, 0.06),
)

_BLACK = (0.06, 0.05, 0.05)
_PINK = (0.88, 0.55, 0.58)
_CREAM = np.array((0.95, 0.92, 0.85), dtype=np.float32)
_CAT_EYES: tuple[RGB, ...] = (
    (0.35, 0.7, 0.25),
    (0.85, 0.75, 0.2),
    (0.85, 0.55, 0.15),
    (0.35, 0.6, 0.9),
)
_DOG_EYES: tuple[RGB, ...] = ((0.22, 0.13, 0.06), (0.10, 0.07, 0.05), (0.35, 0.22, 0.1))


def _interp_matrix(size: int, grid: int) -> np.ndarray:
    pos = (np.arange(size) + 0.5) / size * (grid - 1)
    lo = np.clip(np.floor(pos).astype(int), 0, grid - 2)
    frac = (pos - lo).astype(np.float32)
    matrix = np.zeros((size, grid), dtype=np.float32)
    matrix[np.arange(size), lo] = 1.0 - frac
    matrix[np.arange(size), lo + 1] = frac
    return matrix


_UP = _interp_matrix(IMAGE_SIZE, 5)
_YY, _XX = (np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5) / IMAGE_SIZE


def _pick(rng: np.random.Generator, options: Sequence[RGB]) -> np.ndarray:
    return np.asarray(options[int(rng.integers(len(options)))], dtype=np.float32)


def _colour(rng: np.random.Generator, saturation: tuple[float, float]) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*saturation), rng.uniform(0.25, 0.9))
    return np.asarray(rgb, dtype=np.float32)


# --------------------------------------------------------------------------- scene


def _background(rng: np.random.Generator, style: _Style) -> np.ndarray:
    base, other = _colour(rng, style.saturation), _colour(rng, style.saturation)
    image = np.empty((3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    image[:] = base[:, None, None]
    if rng.random() < 0.5:  # a floor below a horizon
        horizon = rng.uniform(0.55, 0.9)
        floor = np.clip((_YY - horizon) * 40.0, 0.0, 1.0)
        image += (other[:, None, None] - image) * floor[None]
    if rng.random() < style.texture_p:  # wallpaper: stripes or checks
        angle, period = rng.uniform(0, math.pi), rng.uniform(0.06, 0.18)
        along = (_XX * math.cos(angle) + _YY * math.sin(angle)) / period
        wave = np.sin(2 * math.pi * along)
        if rng.random() < 0.5:
            across = (-_XX * math.sin(angle) + _YY * math.cos(angle)) / period
            wave = wave * np.sin(2 * math.pi * across)
        texture = np.clip(wave * 3.0, -1.0, 1.0) * rng.uniform(0.1, 0.3)
        image += texture[None] * (_colour(rng, style.saturation) - base)[:, None, None]
    blotches = rng.normal(0.0, rng.uniform(0.03, 0.1), size=(3, 5, 5)).astype(np.float32)
    image += np.einsum("yi,cij,xj->cyx", _UP, blotches, _UP, optimize=True)
    for _ in range(int(rng.integers(style.clutter[0], style.clutter[1] + 1))):
        _clutter(image, rng, style)
    return image


def _clutter(image: np.ndarray, rng: np.random.Generator, style: _Style) -> None:
    colour = _colour(rng, style.saturation)
    x, y = rng.uniform(0, IMAGE_SIZE, size=2)
    size = rng.uniform(6, 30)
    alpha = rng.uniform(0.6, 1.0)
    kind = rng.integers(3)
    if kind == 0:
        draw.ellipse(
            image,
            (x, y),
            (size, size * rng.uniform(0.3, 1.0)),
            rng.uniform(0, math.pi),
            colour,
            alpha=alpha,
        )
    elif kind == 1:
        w, h, a = size, size * rng.uniform(0.3, 1.5), rng.uniform(-0.3, 0.3)
        c, s = math.cos(a), math.sin(a)
        corners = [
            (x + c * dx - s * dy, y + s * dx + c * dy)
            for dx, dy in ((-w, -h), (w, -h), (w, h), (-w, h))
        ]
        draw.polygon(image, corners, colour, alpha=alpha)
    else:
        end = (x + rng.uniform(-40, 40), y + rng.uniform(-40, 40))
        draw.segment(image, (x, y), end, rng.uniform(1.5, 6), colour, alpha=alpha)


class _Face:
    """Draws in head-local units: origin at the head's centre, 1 = head radius, y down."""

    def __init__(self, image: np.ndarray, centre: draw.Point, radius: float, angle: float) -> None:
        self.image, self.centre, self.radius, self.angle = image, centre, radius, angle
        self._cos, self._sin = math.cos(angle), math.sin(angle)

    def at(self, u: float, v: float) -> draw.Point:
        r = self.radius
        return (
            self.centre[0] + r * (self._cos * u - self._sin * v),
            self.centre[1] + r * (self._sin * u + self._cos * v),
        )

    def ellipse(
        self,
        u: float,
        v: float,
        a: float,
        b: float,
        colour: draw.Colour,
        *,
        angle: float = 0.0,
        alpha: float = 1.0,
        soft: float = 1.0,
    ) -> None:
        draw.ellipse(
            self.image,
            self.at(u, v),
            (a * self.radius, b * self.radius),
            self.angle + angle,
            colour,
            alpha=alpha,
            soft=soft,
        )

    def polygon(
        self, points: Sequence[draw.Point], colour: draw.Colour, alpha: float = 1.0
    ) -> None:
        draw.polygon(self.image, [self.at(u, v) for u, v in points], colour, alpha=alpha)

    def line(
        self, p0: draw.Point, p1: draw.Point, width: float, colour: draw.Colour, alpha: float = 1.0
    ) -> None:
        draw.segment(
            self.image, self.at(*p0), self.at(*p1), width * self.radius, colour, alpha=alpha
        )


def _animal(image: np.ndarray, rng: np.random.Generator, breed: Breed, style: _Style) -> None:
    cat = breed.species == "cat"
    pattern = breed.pattern or PATTERNS[int(rng.choice(4, p=(0.4, 0.2, 0.2, 0.2)))]
    variant = breed.variant
    if variant is None:
        variant = bool(rng.random() < (style.tufted_cat_p if cat else style.pricked_dog_p))
    radius = rng.uniform(*style.radius)
    centre = (
        IMAGE_SIZE / 2 + rng.uniform(-style.shift, style.shift),
        IMAGE_SIZE / 2 + 6 + rng.uniform(-style.shift, style.shift),
    )
    face = _Face(image, centre, radius, rng.uniform(-style.tilt, style.tilt))
    fur = np.clip(_pick(rng, style.fur) * rng.uniform(0.88, 1.12, size=3), 0, 1).astype(np.float32)
    dark = fur * rng.uniform(0.3, 0.55)
    if fur.mean() < 0.25:
        dark = np.clip(fur + 0.35, 0, 1)
    light = fur + (_CREAM - fur) * rng.uniform(0.4, 0.8)
    aspect = rng.uniform(0.8, 0.97) if cat else rng.uniform(0.9, 1.08)

    face.ellipse(0, 1.85, 1.45, 1.0, fur * 0.9)  # shoulders
    if cat:
        _cat_ears(face, rng, fur, variant)
    elif variant:
        for side in (-1, 1):  # pricked, rounded dog ears
            face.ellipse(side * 0.62, -0.95, 0.34, 0.62, fur * 0.95, angle=side * 0.35)
            face.ellipse(side * 0.6, -0.9, 0.2, 0.42, dark, angle=side * 0.35)
    face.ellipse(0, 0, aspect, 1.0, fur)
    _coat(face, rng, pattern, aspect, dark)
    if not cat and not variant:
        length, colour = rng.uniform(0.65, 1.2), dark if rng.random() < 0.6 else fur * 0.8
        for side in (-1, 1):  # floppy ears hanging over the sides of the head
            face.ellipse(
                side * (aspect * 0.9),
                -0.7 + 0.6 * length,
                0.32,
                0.62 * length,
                colour,
                angle=-side * 0.3,
            )
    if cat:
        _cat_muzzle(face, rng, fur, light)
    else:
        _dog_muzzle(face, rng, fur, light)
    _eyes(face, rng, cat, aspect)
    if cat and rng.random() < 0.85:
        whisker = (0.95, 0.95, 0.92) if fur.mean() < 0.45 else (0.2, 0.18, 0.17)
        alpha, width = rng.uniform(0.35, 0.9), max(0.035, 0.7 / radius)
        for side in (-1, 1):
            for k in range(3):
                start = (side * 0.18, 0.4 + 0.05 * k)
                end = (side * rng.uniform(1.05, 1.45), 0.18 + 0.17 * k + rng.uniform(-0.06, 0.06))
                face.line(start, end, width, whisker, alpha)


def _cat_ears(face: _Face, rng: np.random.Generator, fur: np.ndarray, tufted: bool) -> None:
    height = rng.uniform(1.1, 1.5) if tufted else rng.uniform(0.55, 1.2)
    spread = rng.uniform(-0.1, 0.15)
    inner = fur + (np.asarray(_PINK, dtype=np.float32) - fur) * 0.6
    for side in (-1, 1):
        out, inn = (side * 0.93, -0.3), (side * 0.2, -0.88)
        tip = (side * (0.72 + spread), -0.95 - 0.75 * height)
        face.polygon([out, inn, tip], fur)
        mid = ((out[0] + inn[0] + tip[0]) / 3, (out[1] + inn[1] + tip[1]) / 3)
        face.polygon(
            [
                (mid[0] + (p[0] - mid[0]) * 0.55, mid[1] + (p[1] - mid[1]) * 0.55 + 0.05)
                for p in (out, inn, tip)
            ],
            inner,
        )
        if tufted:
            face.line(tip, (tip[0] + side * 0.05, tip[1] - 0.3), 0.07, (0.1, 0.08, 0.08))


def _coat(
    face: _Face, rng: np.random.Generator, pattern: str, aspect: float, dark: np.ndarray
) -> None:
    if pattern == "striped":
        found = draw.ellipse_coverage(
            face.image, face.centre, (aspect * face.radius, face.radius), face.angle
        )
        if found is not None:
            box, cover, u, v = found
            freq, phase = rng.uniform(2.0, 3.2), rng.uniform(0, 2 * math.pi)
            band = np.clip((np.sin(2 * math.pi * freq * u / face.radius + phase) - 0.2) * 2.5, 0, 1)
            upper = np.clip((0.45 - v / face.radius) * 3.0, 0, 1)
            draw.blend(face.image, box, cover * band * upper * 0.85, dark)
    elif pattern == "spotted":
        for _ in range(int(rng.integers(3, 8))):
            size = rng.uniform(0.08, 0.2)
            reach = rng.uniform(0, 0.9 - size)
            angle = rng.uniform(0, 2 * math.pi)
            face.ellipse(
                reach * aspect * math.cos(angle),
                reach * math.sin(angle),
                size,
                size * rng.uniform(0.7, 1.0),
                dark,
                alpha=0.9,
            )
    elif pattern == "masked":
        face.ellipse(0, 0.25, 0.58 * aspect, 0.72, dark, alpha=0.85, soft=0.3 * face.radius)


def _cat_muzzle(face: _Face, rng: np.random.Generator, fur: np.ndarray, light: np.ndarray) -> None:
    if rng.random() < 0.6:
        for side in (-1, 1):
            face.ellipse(side * 0.11, 0.43, 0.14, 0.1, light, alpha=0.8)
    nose = _PINK if rng.random() < 0.7 else _BLACK
    face.polygon([(-0.1, 0.22), (0.1, 0.22), (0, 0.34)], nose)
    face.line((0, 0.34), (0, 0.44), 0.04, _BLACK, 0.8)
    for side in (-1, 1):
        face.line((0, 0.44), (side * 0.13, 0.52), 0.04, _BLACK, 0.8)


def _dog_muzzle(face: _Face, rng: np.random.Generator, fur: np.ndarray, light: np.ndarray) -> None:
    length = rng.uniform(0.5, 1.3)
    colour = light if rng.random() < 0.6 else np.clip(fur * 1.08, 0, 1)
    face.ellipse(0, 0.42 + 0.12 * length, 0.43, 0.3 + 0.22 * length, colour)
    nose_y, nose = 0.22 + 0.06 * length, rng.uniform(0.13, 0.2)
    face.ellipse(0, nose_y, nose, nose * 0.7, _BLACK)
    mouth = nose_y + 0.1 + 0.25 * length
    face.line((0, nose_y), (0, mouth), 0.045, _BLACK, 0.85)
    for side in (-1, 1):
        face.line((0, mouth), (side * 0.22, mouth - 0.06), 0.045, _BLACK, 0.85)
    if rng.random() < 0.25:
        face.ellipse(0, mouth + 0.1, 0.11, 0.13, _PINK)


def _eyes(face: _Face, rng: np.random.Generator, cat: bool, aspect: float) -> None:
    height = -0.12 + rng.uniform(-0.05, 0.05)
    colour = _pick(rng, _CAT_EYES if cat else _DOG_EYES)
    pupil = rng.uniform(0.03, 0.08)
    for side in (-1, 1):
        u = side * 0.36 * aspect
        if cat:
            face.ellipse(u, height, 0.17, 0.12, colour, angle=-side * 0.2)
            face.ellipse(u, height, pupil, 0.11, _BLACK)
        else:
            face.ellipse(u, height, 0.11, 0.11, colour)
        face.ellipse(u + 0.03, height - 0.03, 0.03, 0.03, (1.0, 1.0, 1.0), alpha=0.9)


def _occluder(image: np.ndarray, rng: np.random.Generator, style: _Style) -> None:
    x, y = IMAGE_SIZE / 2 + rng.uniform(-25, 25, size=2)
    size = rng.uniform(8, 18)
    draw.ellipse(
        image,
        (x, y),
        (size, size * rng.uniform(0.4, 1.0)),
        rng.uniform(0, math.pi),
        _colour(rng, style.saturation),
    )


def _camera(image: np.ndarray, rng: np.random.Generator, style: _Style) -> np.ndarray:
    image = (image - 0.5) * rng.uniform(*style.contrast) + 0.5
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (_XX - 0.5) * math.cos(angle) + (_YY - 0.5) * math.sin(angle)
    light = rng.uniform(*style.brightness) * (1.0 + rng.uniform(0, style.light) * 2.0 * ramp)
    cast = 1.0 + rng.uniform(-style.cast, style.cast, size=3).astype(np.float32)
    image = image * light[None] * cast[:, None, None]
    sigma = rng.uniform(*style.noise)
    image += rng.standard_normal(image.shape, dtype=np.float32) * sigma
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _render(rng: np.random.Generator, breed: Breed, style: _Style = _PLAIN) -> np.ndarray:
    """Draw one image of ``breed``: uint8 (3, 96, 96)."""
    image = _background(rng, style)
    _animal(image, rng, breed, style)
    if rng.random() < style.occluder_p:
        _occluder(image, rng, style)
    return _camera(image, rng, style)


def draw_images(
    style: str, n: int, seed: int, *, stream: int = 0, num_classes: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (n, 3, 96, 96) and balanced labels int64 (n,) drawn in ``style`` from the
    random stream ``(seed, stream)``."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r} (known: {', '.join(STYLES)})")
    if n < 0 or seed < 0 or stream < 0:
        raise ValueError(f"n, seed and stream must be >= 0, got n={n}, seed={seed}, stream={stream}")
    kinds = breeds(num_classes)
    labels = np.arange(n, dtype=np.int64) % num_classes
    np.random.default_rng([seed, stream]).shuffle(labels)
    look = _SHIFTED if style == "shifted" else _PLAIN
    images = np.empty((n, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, label in enumerate(labels):
        images[i] = _render(np.random.default_rng([seed, stream, i]), kinds[label], look)
    if style == "augmented":
        images = augment(images, seed=seed + _AUG_SEED_OFFSET)
    return images, labels
