"""Procedural images for synthetic scenes: feature-rich object textures, a calm backdrop, skin tones.

Everything is deterministic for a seed (numpy `default_rng`), pure numpy + PIL drawing.
The object texture is built to give SIFT (used by SfM in preprocessing) many distinctive,
multi-scale features: coloured value noise underneath, then discs, rectangles, triangles, lines
and checker patches of random colours at several sizes.
"""
from __future__ import annotations

import colorsys

import numpy as np
from jaxtyping import Float, UInt8
from PIL import Image, ImageDraw

# Fraction of the texture area each size level of shapes covers (before overlaps), large to
# small: fewer tiny shapes, which look alike and would make feature matches ambiguous.
_LEVEL_COVERAGE = (0.3, 0.5, 0.6, 0.6, 0.45, 0.25, 0.12)

# Skin tones (sRGB) from light to dark; a hand gets one of them, interpolated.
_SKIN_PALETTE = np.array(
    [[241, 200, 170], [228, 178, 145], [205, 145, 110], [170, 112, 80], [120, 78, 55]],
    dtype=np.float64,
)


def _value_noise(
    rng: np.random.Generator, height: int, width: int, base_cells: int, octaves: int,
    channels: int = 3, persistence: float = 0.55,
) -> Float[np.ndarray, "H W C"]:
    """Multi-octave value noise in [0,1]: random lattice values, bicubic-upsampled, summed."""
    out = np.zeros((height, width, channels), np.float32)
    amplitude, total = 1.0, 0.0
    for octave in range(octaves):
        cells = base_cells * 2**octave
        lattice = rng.random((cells + 1, cells + 1, channels), dtype=np.float32)
        for c in range(channels):
            up = Image.fromarray(lattice[..., c], mode="F").resize((width, height), Image.BICUBIC)
            out[..., c] += amplitude * np.asarray(up)
        total += amplitude
        amplitude *= persistence
    return out / total


def _stretch(x: Float[np.ndarray, "..."], lo_pct: float = 2.0, hi_pct: float = 98.0) -> Float[np.ndarray, "..."]:
    """Per-channel contrast stretch to [0,1] (noise sums bunch up around 0.5)."""
    flat = x.reshape(-1, x.shape[-1])
    lo = np.percentile(flat, lo_pct, axis=0)
    hi = np.percentile(flat, hi_pct, axis=0)
    return np.clip((x - lo) / np.maximum(hi - lo, 1e-6), 0.0, 1.0)


def _random_color(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> tuple[int, int, int]:
    """A random sRGB colour with saturation and value drawn from the given ranges."""
    h = rng.random()
    s = rng.uniform(*sat)
    v = rng.uniform(*val)
    r, g, b = colorsys.hsv_to_rgb(h, s, v)
    return int(r * 255), int(g * 255), int(b * 255)


def _shape_color(rng: np.random.Generator) -> tuple[int, int, int]:
    """Shape colours: mostly vivid, sometimes near-black or near-white for extra contrast."""
    u = rng.random()
    if u < 0.12:
        g = int(rng.integers(0, 40))
        return g, g, g
    if u < 0.22:
        g = int(rng.integers(215, 256))
        return g, g, g
    return _random_color(rng, (0.45, 1.0), (0.35, 1.0))


def procedural_texture(size: int, seed: int) -> UInt8[np.ndarray, "H W 3"]:
    """A rich, high-contrast, multi-scale RGB texture of `size` x `size` pixels.

    Coloured value noise (4 octaves) as the base, then random discs, rings, rectangles, triangles,
    lines and checker patches at 7 sizes from size/6 down to size/120, larger ones drawn first.
    """
    if int(size) < 16:
        raise ValueError(f"procedural_texture: size must be >= 16 pixels, found {size}; pass a larger size.")
    size = int(size)
    rng = np.random.default_rng(seed)
    base = _stretch(_value_noise(rng, size, size, base_cells=3, octaves=4))
    # Darken/lighten the base a little so shapes of any colour contrast with it somewhere.
    base = (0.15 + 0.75 * base) * 255.0
    img = Image.fromarray(base.astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(img)

    # Geometric size levels relative to the texture (an object face gets about a third of it in
    # an atlas): from size/6 down to size/120, i.e. ~3-30 rendered pixels on a typical object.
    # Each level covers a fixed fraction of the area, so the texture looks the same at any size.
    levels = np.geomspace(size / 6.0, max(size / 120.0, 2.0), num=len(_LEVEL_COVERAGE))
    for extent, coverage in zip(levels, _LEVEL_COVERAGE):
        count = int(np.ceil(coverage * (size / extent) ** 2))
        n_kinds = 5 if extent >= size / 40.0 else 4  # no tiny checkerboards: they all look alike
        for _ in range(count):
            kind = rng.integers(0, n_kinds)
            cx, cy = rng.uniform(0, size, 2)
            s = extent * rng.uniform(0.5, 1.0)
            color = _shape_color(rng)
            if kind == 0:  # disc or ellipse, sometimes a ring
                ax, ay = s * rng.uniform(0.4, 0.6, 2)
                box = [cx - ax, cy - ay, cx + ax, cy + ay]
                if rng.random() < 0.3:
                    draw.ellipse(box, outline=color, width=max(1, int(s * 0.12)))
                else:
                    draw.ellipse(box, fill=color)
            elif kind == 1:  # rectangle
                w, h = s * rng.uniform(0.3, 1.0, 2)
                draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=color)
            elif kind == 2:  # triangle (strong corners)
                angles = rng.uniform(0, 2 * np.pi, 3)
                pts = [(cx + 0.6 * s * np.cos(a), cy + 0.6 * s * np.sin(a)) for a in angles]
                draw.polygon(pts, fill=color)
            elif kind == 3:  # line / stroke
                a = rng.uniform(0, np.pi)
                dx, dy = 0.7 * s * np.cos(a), 0.7 * s * np.sin(a)
                width = max(1, int(s * rng.uniform(0.04, 0.15)))
                draw.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=color, width=width)
            else:  # checker patch of two colours
                n = int(rng.integers(2, 6))
                cell = max(s / n, 2.0)
                other = _shape_color(rng)
                x0, y0 = cx - n * cell / 2, cy - n * cell / 2
                for i in range(n):
                    for j in range(n):
                        draw.rectangle(
                            [x0 + i * cell, y0 + j * cell, x0 + (i + 1) * cell, y0 + (j + 1) * cell],
                            fill=color if (i + j) % 2 == 0 else other,
                        )
    return np.asarray(img, dtype=np.uint8).copy()


def background_image(width: int, height: int, seed: int) -> UInt8[np.ndarray, "H W 3"]:
    """A plausible static backdrop: muted gradient + soft low-frequency blobs + mild texture.

    Darker and less saturated than `procedural_texture`, so objects and hands stand out.
    """
    if int(width) < 1 or int(height) < 1:
        raise ValueError(f"background_image: width and height must be >= 1, found {width}x{height}.")
    width, height = int(width), int(height)
    rng = np.random.default_rng(seed)
    c0 = np.array(_random_color(rng, (0.08, 0.3), (0.25, 0.5)), np.float32)
    c1 = np.array(_random_color(rng, (0.08, 0.3), (0.3, 0.6)), np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    xx = (xx + 0.5) / width
    yy = (yy + 0.5) / height
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * xx + np.sin(angle) * yy
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = c0 + t[..., None] * (c1 - c0)

    # Soft blobs: Gaussian bumps blended towards a muted colour.
    for _ in range(int(rng.integers(5, 10))):
        mx, my = rng.uniform(-0.1, 1.1, 2)
        sigma = rng.uniform(0.08, 0.3)
        alpha = rng.uniform(0.25, 0.6)
        color = np.array(_random_color(rng, (0.05, 0.35), (0.15, 0.65)), np.float32)
        g = alpha * np.exp(-((xx - mx) ** 2 + ((yy - my) * height / width) ** 2) / (2 * sigma**2))
        img = img + g[..., None] * (color - img)

    # Mild mid-frequency texture (some structure for realism, far weaker than on objects).
    noise = _value_noise(rng, height, width, base_cells=6, octaves=3, channels=1)
    img = img * (0.85 + 0.3 * noise)
    return np.clip(img, 0, 255).astype(np.uint8)


def skin_colors(n_vertices: int, seed: int) -> UInt8[np.ndarray, "V 4"]:
    """Per-vertex RGBA skin colour: one tone per seed, with subtle per-vertex variation."""
    if int(n_vertices) < 0:
        raise ValueError(f"skin_colors: n_vertices must be >= 0, found {n_vertices}.")
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, len(_SKIN_PALETTE) - 1)
    i = min(int(pos), len(_SKIN_PALETTE) - 2)
    tone = _SKIN_PALETTE[i] + (pos - i) * (_SKIN_PALETTE[i + 1] - _SKIN_PALETTE[i])
    n = int(n_vertices)
    brightness = 1.0 + 0.05 * rng.standard_normal((n, 1))  # luminance jitter
    redness = 0.03 * rng.standard_normal((n, 1)) * np.array([[1.0, -0.5, -0.5]])  # slight flush
    rgb = tone[None, :] * brightness * (1.0 + redness)
    rgba = np.concatenate([np.clip(rgb, 0, 255), np.full((n, 1), 255.0)], axis=1)
    return np.round(rgba).astype(np.uint8)
