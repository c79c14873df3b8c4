"""The one preprocessing function shared by training and inference (no TensorFlow here).

Images become uint8 RGB arrays at the model's input size; the float scaling to [0, 1] is the
model's first layer (``Rescaling``), so it is the same code in training and inference too.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

# Pillow refuses images above this many pixels (decompression bombs); moles are small photos.
Image.MAX_IMAGE_PIXELS = 64_000_000


def open_image(source) -> Image.Image:
    """PIL image from a PIL image, bytes, a path or a binary file object; raises ImageError."""
    if isinstance(source, Image.Image):
        return source
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            image = Image.open(io.BytesIO(bytes(source)))
        elif isinstance(source, (str, Path)):
            image = Image.open(source)
        else:
            image = Image.open(source)
        image.load()
    except UnidentifiedImageError as exc:  # its message names a BytesIO object, of no use to a reader
        raise ImageError("not a decodable image: unknown or unsupported format") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"not a decodable image: {exc}") from exc
    return image


def to_rgb(source) -> Image.Image:
    """Decoded, orientation-normalised (EXIF transpose), RGB image."""
    image = open_image(source)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a broken EXIF block is not a reason to refuse the photo
        pass
    if image.mode != "RGB":
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            background = Image.new("RGB", image.size, (255, 255, 255))
            background.paste(image.convert("RGBA"), mask=image.convert("RGBA").split()[-1])
            image = background
        else:
            image = image.convert("RGB")
    return image


def preprocess(source, size: tuple[int, int]) -> np.ndarray:
    """uint8 array of shape (height, width, 3) for an input size given as (width, height)."""
    image = to_rgb(source)
    width, height = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR, reducing_gap=None)
    return np.asarray(image, dtype=np.uint8).copy()
