"""Synthetic HAM10000-shaped datasets for tests: each class is a distinct blob on skin.

Fast (pure Pillow/numpy) and deterministic for a seed. Used by ml's tests and by the Django
side's tests (a session fixture), so its signature is part of the contract.
"""

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import CLASSES

# class -> (RGB colour, shape); colours and shapes differ enough for a tiny CNN to learn them.
STYLES = {
    "akiec": ((205, 95, 95), "square"),
    "bcc": ((245, 235, 240), "ring"),
    "bkl": ((170, 125, 55), "ellipse"),
    "df": ((125, 55, 150), "diamond"),
    "mel": ((35, 20, 25), "blotch"),
    "nv": ((105, 65, 35), "ellipse"),
    "vasc": ((225, 15, 40), "ellipse"),
}


def draw_lesion(dx, *, size=(200, 150), center=None, radius=None, seed=0) -> Image.Image:
    """One synthetic image of class dx; center (x, y) and radius default to random values."""
    rng = np.random.default_rng(seed)
    width, height = size
    skin = np.array([225, 180, 150]) + rng.integers(-20, 21, 3)
    pixels = np.clip(skin + rng.normal(0, 6, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if radius is None:
        radius = rng.uniform(0.12, 0.2) * min(width, height) * 1.4
    if center is None:
        center = (rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height)
    colour, shape = STYLES[dx]
    colour = tuple(int(c) for c in np.clip(np.array(colour) + rng.integers(-12, 13, 3), 0, 255))
    cx, cy = center
    r = radius
    draw = ImageDraw.Draw(image)
    if shape == "square":
        draw.rectangle([cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85], fill=colour)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        draw.ellipse([cx - r * 0.45, cy - r * 0.45, cx + r * 0.45, cy + r * 0.45], fill=(200, 120, 130))
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    elif shape == "blotch":
        angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        radii = r * rng.uniform(0.7, 1.1, len(angles))
        draw.polygon([(cx + q * np.cos(a), cy + q * np.sin(a)) for a, q in zip(angles, radii)], fill=colour)
    else:
        draw.ellipse([cx - r, cy - r * 0.8, cx + r, cy + r * 0.8], fill=colour)
    return image.filter(ImageFilter.GaussianBlur(1.0))


def make_dataset(root, *, per_class=12, layout="flat", seed=0, size=(200, 150)) -> Path:
    """Write HAM10000_metadata.csv and per_class JPEG images of every class under root.

    layout "flat": images/ISIC_*.jpg; "kaggle": HAM10000_images_part_1/ and _part_2/.
    Lesions have one to three images each (same lesion, different photos). Returns root.
    """
    if layout not in ("flat", "kaggle"):
        raise ValueError(f"unknown layout {layout!r}; use 'flat' or 'kaggle'")
    root = Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    image_no = seed * 100_000
    lesion_no = seed * 100_000
    for dx in CLASSES:
        made = 0
        while made < per_class:
            lesion_no += 1
            n_images = min(per_class - made, 1 + (lesion_no % 3 if per_class >= 6 else 0))
            for _ in range(n_images):
                image_no += 1
                image_id = f"ISIC_{image_no:07d}"
                folder = "images" if layout == "flat" else f"HAM10000_images_part_{1 + image_no % 2}"
                path = root / folder / f"{image_id}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                draw_lesion(dx, size=size, seed=int(rng.integers(2**31))).save(path, quality=90)
                rows.append({"lesion_id": f"HAM_{lesion_no:07d}", "image_id": image_id, "dx": dx,
                             "dx_type": "synthetic", "age": str(int(rng.integers(20, 80))),
                             "sex": ["male", "female"][int(rng.integers(2))], "localization": "back"})
            made += n_images
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "HAM10000_metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root
