"""Make a clean rendering look scanned, and keep every word box exact while doing it.

Geometry first: a larger scanner bed around a small receipt, skew and shear, cropped margins and
rescaling are composed into one affine map from the printed sheet to the scan. The ink layer and
the sheet's outline are warped by it once, and the same map moves every word box: its four
corners are mapped and the axis-aligned box around them is kept.

Then pixels, in scan space: faded thermal ink, tinted and stained paper, uneven light, the
scanner lid around the sheet, blur, sensor noise, dust, low contrast, grey or bi-level output.
None of these move anything. Everything draws from one numpy Generator, so a seed reproduces
the same scan byte for byte.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from docformer.document import Box

MAX_SIDE = 1600


def clean(ink: Image.Image) -> Image.Image:
    """The undegraded page: black ink on white paper."""
    return ImageOps.invert(ink).convert("RGB")


def smooth_field(
    rng: np.random.Generator, size: tuple[int, int], cells: tuple[int, int], low: float, high: float
) -> np.ndarray:
    """A slowly varying random field between low and high (light falloff, fading)."""
    coarse = rng.random((int(cells[1]), int(cells[0])), dtype=np.float32)
    field = np.asarray(
        Image.fromarray(coarse, mode="F").resize(size, Image.Resampling.BILINEAR), dtype=np.float32
    )
    return low + (high - low) * field


def affine_boxes(boxes: list[Box], matrix: np.ndarray, size: tuple[int, int]) -> list[Box]:
    """Map boxes by a 3x3 forward affine matrix; keep the axis-aligned box, clipped to the image."""
    if not boxes:
        return []
    b = np.asarray(boxes, dtype=np.float64)
    xs, ys = b[:, [0, 2, 2, 0]], b[:, [1, 1, 3, 3]]
    mx = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    my = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    w, h = size
    out = np.stack(
        [mx.min(1).clip(0, w), my.min(1).clip(0, h), mx.max(1).clip(0, w), my.max(1).clip(0, h)],
        axis=1,
    )
    return [tuple(float(v) for v in row) for row in out]


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def warp(
    image: Image.Image, matrix: np.ndarray, size: tuple[int, int], fill: int = 0
) -> Image.Image:
    inverse = np.linalg.inv(matrix)[:2].ravel()  # PIL wants output -> input coordinates
    return image.transform(
        size, Image.Transform.AFFINE, tuple(inverse), Image.Resampling.BILINEAR, fillcolor=fill
    )


def scan_geometry(
    size: tuple[int, int], boxes: list[Box], rng: np.random.Generator, thermal: bool
) -> tuple[np.ndarray, tuple[int, int]]:
    """The sheet-to-scan affine map and the scan's size."""
    matrix = np.eye(3)
    w, h = size
    if thermal and rng.random() < 0.3:  # a small receipt on a bigger scanner bed
        pad_x, pad_y = int(w * rng.uniform(0.05, 0.6)), int(h * rng.uniform(0.02, 0.2))
        matrix = (
            translation(rng.integers(0, 2 * pad_x + 1), rng.integers(0, 2 * pad_y + 1)) @ matrix
        )
        w, h = w + 2 * pad_x, h + 2 * pad_y
    if rng.random() < 0.7:  # skew, about the centre, growing the canvas to keep the corners
        angle = math.radians(float(np.clip(rng.normal(0, 1.2), -3.5, 3.5)))
        shear = float(rng.uniform(-0.015, 0.015)) if rng.random() < 0.3 else 0.0
        linear = np.array(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        ) @ np.array([[1.0, shear], [0.0, 1.0]])
        corners = (
            np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64) - [w / 2, h / 2]
        ) @ linear.T
        nw = math.ceil(corners[:, 0].max() - corners[:, 0].min())
        nh = math.ceil(corners[:, 1].max() - corners[:, 1].min())
        rotation = np.eye(3)
        rotation[:2, :2] = linear
        matrix = translation(nw / 2, nh / 2) @ rotation @ translation(-w / 2, -h / 2) @ matrix
        w, h = nw, nh
    if boxes and rng.random() < 0.5:  # cut away part of each margin, never into a word
        b = np.asarray(affine_boxes(boxes, matrix, (w, h)))
        room = [b[:, 0].min(), b[:, 1].min(), w - b[:, 2].max(), h - b[:, 3].max()]
        cut = [int(max(0.0, r - 3) * rng.uniform(0, 0.9)) for r in room]
        matrix = translation(-cut[0], -cut[1]) @ matrix
        w, h = w - cut[0] - cut[2], h - cut[1] - cut[3]
    scale = float(rng.uniform(0.7, 1.05)) if rng.random() < 0.4 else 1.0
    scale = min(scale, MAX_SIDE / max(w, h))
    if scale != 1.0:
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        matrix = np.diag([nw / w, nh / h, 1.0]) @ matrix
        w, h = nw, nh
    return matrix, (w, h)


def stain(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A blurred blot or a cup ring: how strongly it darkens each pixel (0 outside)."""
    small = Image.new("L", (max(1, width // 8), max(1, height // 8)), 0)
    draw = ImageDraw.Draw(small)
    cx, cy = rng.uniform(0, small.width), rng.uniform(0, small.height)
    r = rng.uniform(4, max(6, min(small.size) / 3))
    if rng.random() < 0.5:
        draw.ellipse([cx - r, cy - r * rng.uniform(0.6, 1.2), cx + r, cy + r], fill=255)
    else:
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=255, width=max(1, int(r / 6)))
    blot = small.filter(ImageFilter.GaussianBlur(rng.uniform(1, 3))).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.asarray(blot, dtype=np.float32) * (rng.uniform(0.1, 0.3) / 255.0)


def scan(
    ink: Image.Image, boxes: list[Box], rng: np.random.Generator, paper: str = "office"
) -> tuple[Image.Image, list[Box]]:
    """Print `ink` on paper and scan it. `paper` is "thermal" (till rolls) or "office" (laser, A4)."""
    thermal = paper == "thermal"
    if rng.random() < 0.15:  # ink spread on absorbent paper
        ink = ink.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.8))).point(
            lambda v: min(255, int(v * 1.3))
        )

    matrix, size = scan_geometry(ink.size, boxes, rng, thermal)
    boxes = affine_boxes(boxes, matrix, size)
    sheet = None
    if not np.allclose(matrix, np.eye(3)):
        sheet = warp(Image.new("L", ink.size, 255), matrix, size)
        ink = warp(ink, matrix, size)
    width, height = size
    alpha = np.asarray(ink, dtype=np.float32) / 255.0

    # Ink: thermal rolls fade in patches and bands; toner runs low.
    if rng.random() < (0.6 if thermal else 0.15):
        alpha = alpha * smooth_field(
            rng, size, (rng.integers(2, 6), rng.integers(3, 12)), rng.uniform(0.35, 0.8), 1.0
        )
    if thermal and rng.random() < 0.3:
        alpha = alpha * smooth_field(
            rng, (1, height), (1, rng.integers(10, 40)), rng.uniform(0.5, 0.85), 1.0
        )
    grey = rng.random() < 0.35
    mode = "L" if grey else "RGB"
    ink_rgb = (int(rng.uniform(0, 60)),) * 3
    if thermal and not grey and rng.random() < 0.25:  # purple and blue thermal dyes
        ink_rgb = [(80, 40, 120), (40, 50, 130), (60, 60, 90)][rng.integers(3)]

    # Paper: tint, uneven light, a shadow from one edge, stains.
    tint = np.array(
        [255, 251, 242] if thermal and rng.random() < 0.5 else [255, 255, 255], dtype=np.float32
    ) - rng.uniform(0, 18)
    light = smooth_field(rng, size, (3, 4), rng.uniform(0.82, 0.97), 1.0)
    if rng.random() < 0.25:
        along_x = rng.random() < 0.5
        ramp = np.linspace(1.0, 0.0, width if along_x else height, dtype=np.float32) ** rng.uniform(
            2, 6
        )
        shade = 1.0 - rng.uniform(0.15, 0.45) * (ramp[::-1] if rng.random() < 0.5 else ramp)
        light *= shade[None, :] if along_x else shade[:, None]
    stains = None
    for _ in range(rng.integers(1, 4) if rng.random() < 0.25 else 0):
        stains = stain(rng, width, height) if stains is None else stains + stain(rng, width, height)
    coffee = (0.45, 0.55, 0.7)  # how much a stain darkens each channel: brown
    paper_channels = []
    for c in range(1 if grey else 3):
        channel = light * tint[c]
        if stains is not None:
            channel *= 1.0 - stains * coffee[c]
        paper_channels.append(np.clip(channel, 0, 255).astype(np.uint8))
    paper_image = Image.fromarray(paper_channels[0] if grey else np.dstack(paper_channels), mode)
    alpha_image = Image.fromarray(np.clip(alpha * 255.0, 0, 255).astype(np.uint8), "L")
    image = Image.composite(
        Image.new(mode, size, ink_rgb[0] if grey else ink_rgb), paper_image, alpha_image
    )
    if sheet is not None:  # the scanner lid shows where the sheet is not
        lid = int(rng.choice([rng.uniform(200, 255), rng.uniform(60, 180)]))
        image = Image.composite(image, Image.new(mode, size, lid if grey else (lid,) * 3), sheet)

    # Optics and sensor.
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.1)))
    if rng.random() < 0.2:  # washed out
        contrast = rng.uniform(0.45, 0.8)
        image = image.point(
            [round(255 - (255 - v) * contrast) for v in range(256)] * (1 if grey else 3)
        )
    noisy = rng.random() < 0.7
    specks = rng.random() < 0.3
    if noisy or specks:
        pixels = np.asarray(image, dtype=np.int16)
        if noisy:
            noise = (
                rng.standard_normal((height, width), dtype=np.float32) * rng.uniform(2, 12)
            ).astype(np.int16)
            pixels = pixels + (noise if grey else noise[..., None])
        if specks:  # dust
            count = int(rng.integers(20, 400))
            pixels[rng.integers(0, height, count), rng.integers(0, width, count)] = int(
                rng.uniform(0, 120)
            )
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode)
    if grey and rng.random() < 0.12:  # fax-like bi-level
        threshold = int(rng.integers(110, 170))
        image = image.point([255 if v > threshold else 0 for v in range(256)])
    return image, boxes
