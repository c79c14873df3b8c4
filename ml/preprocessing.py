"""The one preprocessing function shared by training and inference (no TensorFlow here).

Images become uint8 RGB arrays at the model's input size; the float scaling to [0, 1] is the
model's first layer (``Rescaling``), so it is the same code in training and inference too.
"""

import io

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

# iPhones save photos as HEIC; pillow-heif teaches Pillow to read it (AVIF Pillow reads itself),
# for the site's uploads and `python -m ml predict` alike. It applies the HEIF rotation box when
# decoding and reports the EXIF orientation as 1, so an exif_transpose does not rotate such a
# photo a second time.
pillow_heif.register_heif_opener()

# Pillow refuses images above this many pixels (decompression bombs); moles are small photos.
Image.MAX_IMAGE_PIXELS = 64_000_000

# A JPEG is decoded at the smallest of 1/1, 1/2, 1/4, 1/8 scale that keeps both sides at least
# this long (or the model's input size, if larger): libjpeg then skips most of the work, and a
# 12-megapixel phone photo decodes about 10x faster. It is enough for the model input and for
# the 400-pixel heatmap overlay; HAM10000's 600x450 and 200x150 photos decode at full size.
DECODE_MIN_SIDE = 400


def decode_side(size: tuple[int, int]) -> int:
    """The shortest side a JPEG is decoded to, for a model input size (width, height)."""
    return max(DECODE_MIN_SIDE, *size)


def open_image(source, min_side: int | None = None) -> Image.Image:
    """PIL image from a PIL image, bytes, a path or a binary file object; raises ImageError.
    With min_side, a JPEG not yet decoded is decoded at a reduced scale (see DECODE_MIN_SIDE)."""
    try:
        if isinstance(source, Image.Image):
            image = source
        elif isinstance(source, (bytes, bytearray, memoryview)):
            image = Image.open(io.BytesIO(bytes(source)))
        else:
            image = Image.open(source)
        if min_side and image.format == "JPEG":
            image.draft("RGB", (min_side, min_side))  # a no-op once the pixels are loaded
        image.load()
    except UnidentifiedImageError as exc:  # its message names a BytesIO object, of no use to a reader
        raise ImageError("not a decodable image: unknown or unsupported format") from exc
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"not a decodable image: {exc}") from exc
    return image


def to_rgb(source, min_side: int | None = None) -> Image.Image:
    """Decoded (a JPEG at a reduced scale with min_side), orientation-normalised (EXIF
    transpose), RGB image."""
    image = open_image(source, min_side)
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
    image = to_rgb(source, decode_side(size))
    width, height = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR, reducing_gap=None)
    return np.asarray(image, dtype=np.uint8).copy()
