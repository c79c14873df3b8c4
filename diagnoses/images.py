"""Upload validation and sanitising: every image is judged by its content, never its name.

The stored copy is re-encoded from pixels only, so EXIF (GPS included), ICC comments and any
trailing bytes a crafted file carried are gone, and the orientation is applied to the pixels.
"""

import hashlib
import io
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image, ImageOps, UnidentifiedImageError

import ml.preprocessing  # noqa: F401  (registers the HEIC reader with Pillow, see there)
from ml.quality import photo_issues

ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "HEIF", "AVIF"}
ACCEPTED_NAMES = "JPEG, PNG, WebP, HEIC or AVIF"  # what the messages tell the patient
STORED_MAX_SIDE = 4096
THUMBNAIL_SIZE = (320, 320)


def upload_limits() -> str:
    """What the upload form, its script and the API schema tell the patient they may send."""
    return (f"{ACCEPTED_NAMES}, up to {settings.MAX_UPLOAD_BYTES // 1_048_576} MB and "
            f"{settings.MAX_UPLOAD_PIXELS // 1_000_000} megapixels")


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


def read_upload(upload) -> bytes:
    """Read an uploaded file, refusing empty and oversized ones before decoding anything."""
    limit = settings.MAX_UPLOAD_BYTES
    size = getattr(upload, "size", None)
    if size is not None and size > limit:
        _refuse(f"The file is too large ({size / 1_048_576:.1f} MB); the limit is {limit // 1_048_576} MB.", "too_large")
    upload.seek(0)
    data = upload.read(limit + 1)
    if not data:
        _refuse("The file is empty.", "empty")
    if len(data) > limit:
        _refuse(f"The file is too large; the limit is {limit // 1_048_576} MB.", "too_large")
    return data


def decode_image(data: bytes) -> Image.Image:
    """Decode fully (a truncated file fails here), refusing non-images and pixel bombs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ACCEPTED_FORMATS:
                _refuse(f"Unsupported image type: please upload a {ACCEPTED_NAMES} photo.", "unsupported")
            if image.width * image.height > settings.MAX_UPLOAD_PIXELS:
                _refuse(
                    f"The image is too large ({image.width}×{image.height} pixels); "
                    f"the limit is {settings.MAX_UPLOAD_PIXELS // 1_000_000} megapixels.",
                    "too_many_pixels",
                )
            image.load()
    except ValidationError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        _refuse("The image is too large to process.", "too_many_pixels")
    except UnidentifiedImageError:
        _refuse(f"This file is not an image we can read: please upload a {ACCEPTED_NAMES} photo.", "not_an_image")
    except (OSError, SyntaxError, ValueError):
        _refuse("The image file is damaged or incomplete: please upload it again.", "corrupt")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def encode_jpeg(image: Image.Image, quality=90) -> bytes:
    out = io.BytesIO()
    # No exif=, icc_profile= or comment=: the new file carries pixels only.
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
