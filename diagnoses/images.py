"""Upload validation and sanitising: every image is judged by its content, never its name.

The stored copy is re-encoded from pixels only, so EXIF (GPS included), XMP, comments, ICC
profiles and any trailing bytes a crafted file carried are gone; the orientation and the colour
profile (to sRGB) are applied to the pixels.
"""

import hashlib
import io
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image

from ml.errors import ImageError
# ml.preprocessing also registers the HEIC reader with Pillow (see there).
from ml.preprocessing import (JPEG_FORMATS, MAX_PIXELS, TooManyPixels, UnknownFormat, decoded,
                              exif_orientation, opened, to_rgb)
from ml.quality import photo_issues

ACCEPTED_FORMATS = {*JPEG_FORMATS, "PNG", "WEBP", "HEIF", "AVIF"}  # a camera's MPO is a JPEG
ACCEPTED_NAMES = "JPEG, PNG, WebP, HEIC or AVIF"  # what the messages tell the patient
STORED_MAX_SIDE = 4096
THUMBNAIL_SIZE = (320, 320)
MEGABYTE = 1_048_576  # as the upload page's script counts them too (static/js/upload.js)
# The shortest a photo's shorter side may be: the model's input is 160×120, so a smaller photo
# (a thumbnail sent by mistake) would be blown up into a blur the model rates all the same, most
# often as harmless. HAM10000's photos (200×150 in ../shared/data) pass. Uploads only: `python -m
# ml predict` scores any image.
MIN_UPLOAD_SIDE = 120
# EXIF orientations that turn the photo a quarter: its width and height swap on display.
QUARTER_TURNS = {5, 6, 7, 8}


def _in_units(count: int, unit: int) -> str:
    """count / unit with one decimal, none when it is whole: "20", "28.6"."""
    value = count / unit
    return f"{value:.0f}" if value == round(value) else f"{value:.1f}"


def megabytes(count: int) -> str:
    return f"{_in_units(count, MEGABYTE)} MB"


def megapixels(count: int) -> str:
    return f"{_in_units(count, 1_000_000)} megapixels"


def upload_limits() -> str:
    """What the upload form, its script and the API schema tell the patient they may send."""
    return (f"{ACCEPTED_NAMES}, up to {megabytes(settings.MAX_UPLOAD_BYTES)} and "
            f"{megapixels(settings.MAX_UPLOAD_PIXELS)}, at least {MIN_UPLOAD_SIDE} pixels on the shorter side")


@dataclass(frozen=True)
class CleanImage:
    image_jpeg: bytes
    thumbnail_jpeg: bytes
    sha256: str
    width: int
    height: int
    photo_issues: list  # codes of ml.quality.ISSUES: what makes the model's result unreliable


def _refuse(message, code):
    raise ValidationError(message, code=code)


def _refuse_too_large(size: int | None = None):
    """The size is shown only where it reads as more than the limit: "20.0 MB; the limit is
    20 MB" would contradict itself for a file a few bytes over."""
    limit = settings.MAX_UPLOAD_BYTES
    size_mb = f"{size / MEGABYTE:.1f}" if size else ""
    shown = f" ({size_mb} MB)" if size_mb and float(size_mb) > limit / MEGABYTE else ""
    _refuse(f"The file is too large{shown}; the limit is {megabytes(limit)}.", "too_large")


def _refuse_too_many_pixels(described: str):
    _refuse(f"The image is too large ({described}); the limit is "
            f"{megapixels(settings.MAX_UPLOAD_PIXELS)}.", "too_many_pixels")


def _refuse_too_small(image: Image.Image):
    """The size named as the patient sees the photo, upright (EXIF orientation)."""
    width, height = image.size
    if exif_orientation(image) in QUARTER_TURNS:
        width, height = height, width
    _refuse(f"This photo is too small ({width}×{height} pixels): please upload one at least "
            f"{MIN_UPLOAD_SIDE} pixels on its shorter side.", "too_small")


def _refuse_damaged():
    _refuse("The image file is damaged or incomplete: please upload it again.", "corrupt")


def read_upload(upload) -> bytes:
    """Read an uploaded file, refusing empty and oversized ones before decoding anything."""
    limit = settings.MAX_UPLOAD_BYTES
    size = getattr(upload, "size", None)
    if size is not None and size > limit:
        _refuse_too_large(size)
    upload.seek(0)
    data = upload.read(limit + 1)
    if not data:
        _refuse("The file is empty.", "empty")
    if len(data) > limit:
        _refuse_too_large()
    return data


def decode_image(data: bytes) -> Image.Image:
    """Decode fully, refusing non-images, other formats, pixel bombs, photos too small for the
    model (MIN_UPLOAD_SIDE) and damaged files: those ml.preprocessing cannot decode, a JPEG cut
    short among them (see GREY_FILL there), as it refuses them for the worker and `python -m ml
    predict` too."""
    try:
        image = opened(data)
        if image.format not in ACCEPTED_FORMATS:
            _refuse(f"Unsupported image type: please upload a {ACCEPTED_NAMES} photo.",
                    "unsupported")
        if image.width * image.height > settings.MAX_UPLOAD_PIXELS:
            _refuse_too_many_pixels(f"{image.width}×{image.height} pixels")
        # From the header, before decoding: turning the photo upright keeps its shorter side.
        if min(image.size) < MIN_UPLOAD_SIDE:
            _refuse_too_small(image)
        return decoded(image, original=True)
    except TooManyPixels:  # over MAX_PIXELS, above the upload limit: said as Pillow's limit was
        _refuse_too_many_pixels(f"over {megapixels(MAX_PIXELS)}")
    except UnknownFormat:
        _refuse(f"This file is not an image we can read: please upload a {ACCEPTED_NAMES} photo.",
                "not_an_image")
    except ImageError:
        _refuse_damaged()


def encode_jpeg(image: Image.Image, quality=90) -> bytes:
    out = io.BytesIO()
    # No exif=, icc_profile= or comment=, and to_rgb left image.info empty (Pillow's JPEG saver
    # falls back to it for the comment): the new file carries pixels only.
    image.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def sanitize_upload(upload) -> CleanImage:
    data = read_upload(upload)
    image = to_rgb(decode_image(data))
    if max(image.size) > STORED_MAX_SIDE:
        image.thumbnail((STORED_MAX_SIDE, STORED_MAX_SIDE), Image.Resampling.LANCZOS)
    thumbnail = image.copy()
    thumbnail.thumbnail(THUMBNAIL_SIZE, Image.Resampling.LANCZOS)
    return CleanImage(
        image_jpeg=encode_jpeg(image),
        thumbnail_jpeg=encode_jpeg(thumbnail, quality=85),
        sha256=hashlib.sha256(data).hexdigest(),
        width=image.width,
        height=image.height,
        photo_issues=photo_issues(image),
    )
