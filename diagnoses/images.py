"""Upload validation and sanitising: every image is judged by its content, never its name.

The stored copy is re-encoded from pixels only, so EXIF (GPS included), XMP, comments, ICC
profiles and any trailing bytes a crafted file carried are gone; the orientation and the colour
profile (to sRGB) are applied to the pixels.
"""

import hashlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image, UnidentifiedImageError

# ml.preprocessing also registers the HEIC reader with Pillow (see there).
from ml.preprocessing import JPEG_FORMATS, UNDECODABLE, to_rgb
from ml.quality import photo_issues

ACCEPTED_FORMATS = {*JPEG_FORMATS, "PNG", "WEBP", "HEIF", "AVIF"}  # a camera's MPO is a JPEG
ACCEPTED_NAMES = "JPEG, PNG, WebP, HEIC or AVIF"  # what the messages tell the patient
STORED_MAX_SIDE = 4096
THUMBNAIL_SIZE = (320, 320)
MEGABYTE = 1_048_576  # as the upload page's script counts them too (static/js/upload.js)
# Pillow refuses a JPEG whose data runs out, but not one cut short that still ends in an
# end-of-image marker (FF D9): libjpeg fills the blocks it lacks with mid-grey, 128 in every
# sample, and Pillow discards libjpeg's warning, so nothing else tells.
# Those blocks come last, so the bottom GREY_FILL_ROWS rows (a row of blocks) are all that grey;
# a photo's are not, to the last sample, as its noise and shading survive compression (none of
# HAM10000's 8,561 is). A cut in the last row of blocks leaves only a grey corner; a progressive
# JPEG cut short decodes as the whole photo, coarser, which the pixels cannot tell from a soft
# photo (the blur check may flag it).
GREY_FILL = 128
GREY_FILL_ROWS = 8


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
            f"{megapixels(settings.MAX_UPLOAD_PIXELS)}")


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


def _refuse_damaged():
    _refuse("The image file is damaged or incomplete: please upload it again.", "corrupt")


def grey_filled(image: Image.Image) -> bool:
    """Whether a decoded JPEG's bottom rows are libjpeg's fill for missing data (GREY_FILL).
    An RGB or greyscale one: Pillow inverts a CMYK JPEG's fill to 127, and a CMYK JPEG is a
    print file, not a photo."""
    bottom = image.crop((0, max(0, image.height - GREY_FILL_ROWS), image.width, image.height))
    return bool((np.asarray(bottom) == GREY_FILL).all())


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
    """Decode fully (a truncated file fails here, see GREY_FILL for a JPEG), refusing
    non-images and pixel bombs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                _refuse(f"Unsupported image type: please upload a {ACCEPTED_NAMES} photo.",
                        "unsupported")
            if image.width * image.height > settings.MAX_UPLOAD_PIXELS:
                _refuse_too_many_pixels(f"{image.width}×{image.height} pixels")
            image.load()
            if image.format in JPEG_FORMATS and grey_filled(image):
                _refuse_damaged()
    except ValidationError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow refuses it before its size is known to us: it is over Image.MAX_IMAGE_PIXELS.
        _refuse_too_many_pixels(f"over {megapixels(Image.MAX_IMAGE_PIXELS)}")
    except UnidentifiedImageError:
        _refuse(f"This file is not an image we can read: please upload a {ACCEPTED_NAMES} photo.",
                "not_an_image")
    except UNDECODABLE:
        _refuse_damaged()
    return image


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
