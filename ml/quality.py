"""Checks of a photo before its result is trusted: too dark, too bright, out of focus, or in
black and white.

The model learned from HAM10000's dermoscopic photos, all lit by the dermatoscope's light and in
focus. On its validation split, photos made darker or blurrier than nearly all of those make
malignant moles look less suspicious to it: the share of malignant photos rated medium or high
risk fell from 0.95 to 0.80 at 0.7x the brightness, to 0.22 at 0.5x, and to 0.65 under a
Gaussian blur of 4 pixels (on 600x450); brighter photos cost accuracy too (bench/
bench_photo_checks.py measures all of it). So a photo outside the range of the training photos
is flagged, and the site says that a low result from it cannot be relied on.

Each of those limits is a percentile of HAM10000's photos (the 8,561 in ../shared; the bench
prints them): a photo is flagged when it is darker than 99% of them, brighter than 99% of them, or
less sharp than 99.5% of them; 2.5% of those photos are flagged in all. The photo is measured
at ANALYSIS_SIZE, twice the model's input, as a grey image but for its colour: blur that
resizing to the model's input removes does not matter to it. A portrait photo is turned to
landscape first, as for the model (ml.preprocessing.oriented_like), so it is not squashed.

The model learned from colour photos, and colour is much of what it goes by: on 150 malignant
photos of its validation split, black-and-white copies (a phone's mono filter) had a mean
malignant probability of 0.24 instead of 0.58, and 72 of them were rated low instead of 13 (the
card of 2026-12-01, before its offset; bench_photo_checks.py measures the current one). So a
photo with almost no colour is flagged "grey": none of HAM10000's photos but one already too
bright (see GREY_BELOW). Overexposure washes colour out too: at 1.6x the brightness, 3% of them
are flagged grey as well as bright.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .preprocessing import oriented_like

ANALYSIS_SIZE = (320, 240)  # (width, height)
DARK_BELOW = 113.0       # mean brightness, 0-255: HAM10000's 1st percentile (113.5)
BRIGHT_ABOVE = 202.0     # its 99th percentile (202.0)
BLURRY_BELOW = 2.5       # sharpness (see measure): its 0.5th percentile (2.49)
# colourfulness (see measure), 0-255: HAM10000's photos measure 6.0 at the 1st percentile and
# 3.2 at the least but one, a washed-out photo also too bright (1.95); a black-and-white photo
# measures 0, saved as a colour JPEG too.
GREY_BELOW = 2.0

ISSUES = ("dark", "bright", "blurry", "grey")  # the codes photo_issues returns, in this order


@dataclass(frozen=True)
class PhotoMeasures:
    brightness: float  # mean grey level, 0-255
    sharpness: float   # variance of the Laplacian of the grey image (a dark one brightened)
    colourfulness: float  # mean |channel - its pixel's mean|, 0-255 (a dark one brightened)


def as_measured(image: Image.Image) -> np.ndarray:
    """The image at ANALYSIS_SIZE, a portrait one turned as the model sees it, as floats."""
    turned = oriented_like(image, ANALYSIS_SIZE)
    return np.asarray(turned.resize(ANALYSIS_SIZE, Image.BILINEAR, reducing_gap=None),
                      dtype=np.float32)


def measure(image: Image.Image) -> PhotoMeasures:
    """Brightness, sharpness and colourfulness of an RGB image. Darkening scales the Laplacian
    and the colours' spread with the pixels, so a photo darker than DARK_BELOW is measured as if
    brightened to it: a sharp, colourful dark photo is called dark, not also blurry or grey.
    Brighter ones are measured as they are; scaling them all to one brightness told HAM10000's
    photos from blurred copies worse (at the same share of photos flagged, it caught 80% of the
    2-pixel blurs on the validation split instead of all of them)."""
    grey = as_measured(image.convert("L"))
    brightness = float(grey.mean())
    lift = max(1.0, DARK_BELOW / max(brightness, 1.0))
    g = grey * lift
    laplacian = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    rgb = as_measured(image)
    spread = np.abs(rgb - rgb.mean(axis=-1, keepdims=True)).mean()
    return PhotoMeasures(brightness=brightness, sharpness=float(laplacian.var()),
                         colourfulness=float(spread * lift))


def issues_of(measures: PhotoMeasures) -> list[str]:
    """The codes of ISSUES that the measures call for, in ISSUES order."""
    found = []
    if measures.brightness < DARK_BELOW:
        found.append("dark")
    if measures.brightness > BRIGHT_ABOVE:
        found.append("bright")
    if measures.sharpness < BLURRY_BELOW:
        found.append("blurry")
    if measures.colourfulness < GREY_BELOW:
        found.append("grey")
    return found


def photo_issues(image: Image.Image) -> list[str]:
    """What is wrong with a photo for the model: a list of codes of ISSUES, empty if nothing."""
    return issues_of(measure(image))
