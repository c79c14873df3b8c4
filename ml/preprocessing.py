"""The one preprocessing function shared by training and inference (no TensorFlow here).

Images become uint8 RGB arrays at the model's input size; the float scaling to [0, 1] is the
model's first layer (``Rescaling``), so it is the same code in training and inference too.
"""

import io
import re
import threading
import warnings

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, UnidentifiedImageError

from .errors import ImageError

# iPhones save photos as HEIC; pillow-heif teaches Pillow to read it (AVIF Pillow reads itself),
# for the site's uploads and `python -m ml predict` alike. It applies the HEIF rotation box when
# decoding and reports the EXIF orientation as 1, so upright() does not rotate such a photo a
# second time.
pillow_heif.register_heif_opener()

# The most pixels an image may have (decompression bombs); moles are small photos. opened()
# refuses more. Pillow's own limit is set to it too, for images opened elsewhere, but Pillow
# only warns (DecompressionBombWarning) up to twice its limit and refuses above that.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# A JPEG is decoded at the smallest of 1/1, 1/2, 1/4, 1/8 scale that keeps both sides at least
# this long (or the model's input size, if larger): libjpeg then skips most of the work, and a
# 12-megapixel phone photo decodes about 10x faster. It is enough for the model input and for
# the 400-pixel heatmap overlay; HAM10000's 600x450 and 200x150 photos decode at full size.
DECODE_MIN_SIDE = 400
# What Pillow names a JPEG: MPO is one whose MPF block lists more images after the photo (the
# preview Canon, Sony and Nikon cameras add, a 3D camera's second eye). Its first frame, with
# its EXIF, is the photo; the others are never read.
JPEG_FORMATS = ("JPEG", "MPO")


def decode_side(size: tuple[int, int]) -> int:
    """The shortest side a JPEG is decoded to, for a model input size (width, height)."""
    return max(DECODE_MIN_SIDE, *size)


# What Pillow and its plugins raise for a file they cannot decode: AVIF's decoder raises
# RuntimeError ("Missing or empty image item"), a plugin may hit the end of its data (EOFError).
UNDECODABLE = (OSError, SyntaxError, ValueError, RuntimeError, EOFError)

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

# The major brands of an ISO-BMFF file type box ("ftyp" at offset 4) that Pillow's AVIF reader
# and pillow-heif accept: a file that names one and cannot be identified is a damaged AVIF or
# HEIC (Pillow's AVIF reader parses the whole file to identify it, so a truncated one is not
# identified at all), not a file of another kind.
HEIF_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm",
               b"hevs", b"mif1", b"msf1"}


# warnings.catch_warnings swaps the process's list of warning filters and puts it back after:
# threads of this process opening images at once (training's decoding pool, the site's threads)
# would put back each other's lists.
_WARNING_FILTERS = threading.Lock()


class UnknownFormat(ImageError):
    """Not an image in any format Pillow (with pillow-heif) reads."""


class TooManyPixels(ImageError):
    """An image of more than MAX_PIXELS."""


ORIENTATION_TAG = 0x0112
# How to turn the pixels upright for each EXIF orientation (1, or none, is upright already).
UPRIGHT_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Greyscale with more than 8 bits a sample (a 16-bit PNG is I;16): convert("RGB") would clip it.
DEEP_GREY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
SIXTEEN_TO_EIGHT_BITS = 255 / 65535


def opened(source) -> Image.Image:
    """The image in bytes, a path or a binary file object, identified but not decoded (its
    format and size known); raises ImageError: UnknownFormat, TooManyPixels, or a damaged file."""
    try:
        with _WARNING_FILTERS, warnings.catch_warnings():
            # Pillow only warns between MAX_PIXELS and twice it: refused below, by its size
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(_as_file(source))  # identified; decoded() decodes the pixels
    except UnidentifiedImageError as exc:  # its message names a BytesIO, of no use to a reader
        raise _unidentified(source) from exc
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(_pixels_named(exc)) from exc
    except UNDECODABLE as exc:
        raise ImageError(f"not a decodable image: {exc}") from exc
    if image.width * image.height > MAX_PIXELS:
        image.close()
        raise _too_many_pixels(image.width * image.height, image.size)
    return image


def _as_file(source):
    """What Image.open reads: bytes become a file object, a path or file object stays."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    return source


def _unidentified(source) -> ImageError:
    """The error for a file Pillow cannot identify: damaged when it starts like an AVIF or HEIC
    (see HEIF_BRANDS), otherwise of an unknown format."""
    head = _first_bytes(source, 12)
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        return ImageError(f"not a decodable image: a damaged or incomplete HEIF/AVIF file "
                          f"(brand {head[8:12].decode('ascii')})")
    return UnknownFormat("not a decodable image: unknown or unsupported format")


def _first_bytes(source, count: int) -> bytes:
    """The first count bytes of bytes, a binary file object or a path; b"" if unreadable."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:count])
    try:
        if hasattr(source, "read"):
            source.seek(0)  # Image.open reads a file object from its start too
            return source.read(count)
        with open(source, "rb") as file:
            return file.read(count)
    except OSError:
        return b""


def _pixels_named(exc: Exception) -> int | None:
    """The pixel count in Pillow's DecompressionBombError ("Image size (N pixels) exceeds
    ..."): Pillow refuses such an image before it gives its size."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return int(found.group(1)) if found else None


def _too_many_pixels(pixels: int | None, size: tuple[int, int] | None = None) -> TooManyPixels:
    """The error naming the pixel count (and the size, when known), or, when Pillow's message
    gives no count, that it is over twice the limit: Pillow refuses those itself."""
    counted = f"{pixels:,} pixels" if pixels else f"over {2 * MAX_PIXELS:,} pixels"
    shown = f" ({size[0]}×{size[1]})" if size else ""
    return TooManyPixels(f"too many pixels: {counted}{shown}, over the limit of {MAX_PIXELS:,}")


def decoded(image: Image.Image, min_side: int | None = None, *, original: bool = False) -> Image.Image:
    """The image with its pixels loaded, a JPEG not yet decoded at a reduced scale with min_side
    (see DECODE_MIN_SIDE); raises ImageError for a damaged file. original: a file as its owner
    sent it (an upload, a path given to `ml predict`), whose JPEG is refused when cut short too.
    Not the site's stored copies, re-encoded from an upload that passed (a PNG whose bottom rows
    are mid-grey would fail as its JPEG copy), nor the training photos."""
    full_height = image.height
    try:
        if min_side and image.format in JPEG_FORMATS:
            image.draft("RGB", (min_side, min_side))  # a no-op once the pixels are loaded
        image.load()
    except Image.DecompressionBombError as exc:  # a plugin's check of a frame or a tile
        raise _too_many_pixels(_pixels_named(exc)) from exc
    except UNDECODABLE as exc:
        raise ImageError(f"not a decodable image: {exc}") from exc
    if original and image.format in JPEG_FORMATS and grey_filled(image, full_height):
        raise ImageError("not a decodable image: the JPEG is cut short (its missing part "
                         "decodes as mid-grey)")
    return image


def grey_filled(image: Image.Image, full_height: int | None = None) -> bool:
    """Whether a decoded JPEG's bottom rows are libjpeg's fill for missing data (GREY_FILL).
    full_height: its height before a reduced-scale decode, which shrinks the row of blocks
    too (to one row at 1/8). An RGB or greyscale one: Pillow inverts a CMYK JPEG's fill to 127,
    and a CMYK JPEG is a print file, not a photo."""
    rows = -(-GREY_FILL_ROWS * image.height // (full_height or image.height))  # rounded up
    bottom = image.crop((0, max(0, image.height - rows), image.width, image.height))
    return bool((np.asarray(bottom) == GREY_FILL).all())


def open_image(source, min_side: int | None = None, *, original: bool = False) -> Image.Image:
    """Decoded PIL image from a PIL image, bytes, a path or a binary file object; raises
    ImageError. With min_side, a JPEG not yet decoded is decoded at a reduced scale (see
    DECODE_MIN_SIDE); original: as decoded()'s."""
    image = source if isinstance(source, Image.Image) else opened(source)
    return decoded(image, min_side, original=original)


def exif_orientation(image: Image.Image) -> int:
    """The image's EXIF (or XMP) orientation, 1 when it has none or it cannot be read."""
    try:
        return int(image.getexif().get(ORIENTATION_TAG, 1))
    except Exception:  # Pillow's EXIF parser raises a zoo of errors for a malformed block
        return 1


def upright(image: Image.Image) -> Image.Image:
    """The pixels turned as the EXIF orientation says. Not ImageOps.exif_transpose: it writes
    the EXIF block back without the orientation, and a malformed tag (a camera's Make stored as
    a number) makes that fail, after the pixels were turned."""
    transpose = UPRIGHT_TRANSPOSE.get(exif_orientation(image))
    return image.transpose(transpose) if transpose is not None else image


def to_8_bits(image: Image.Image) -> Image.Image:
    """A deep greyscale image (DEEP_GREY_MODES) as mode L, scaled rather than clipped. I;16
    holds 16-bit samples; I and F may hold 8-bit ones too, so they are scaled only when a
    value shows they do not. A transparent grey (a PNG's tRNS) becomes an alpha channel (LA):
    only the deep samples tell it from the grey next to it."""
    if image.mode not in DEEP_GREY_MODES:
        return image
    samples = np.asarray(image)  # as stored: 2 or 4 bytes a pixel
    deep = image.mode.startswith("I;16") or samples.max(initial=0) > 255
    grey = Image.fromarray(_in_8_bits(samples, deep))  # mode L
    if "transparency" in image.info:
        opaque = (samples != image.info["transparency"]).view(np.uint8)  # 1 where opaque
        opaque *= 255
        grey.putalpha(Image.fromarray(opaque))
    return grey


# Pixels to_8_bits converts at a time: the whole image at once in float64 took 32 bytes a pixel
# in copies, 1.37 GB at the peak for a 40-megapixel 16-bit upload against 0.4 GB for an RGB
# one; a band of rows at a time keeps the same arithmetic, and so the same output.
BAND_PIXELS = 1 << 20


def _in_8_bits(samples: np.ndarray, deep: bool) -> np.ndarray:
    """uint8 samples: scaled from 16 bits when deep, rounded (to the even integer on a tie) and
    clipped to 0-255, a band of BAND_PIXELS at a time."""
    out = np.empty(samples.shape, dtype=np.uint8)
    rows = max(1, BAND_PIXELS // max(1, samples.shape[1]))
    for top in range(0, samples.shape[0], rows):
        band = samples[top:top + rows].astype(np.float64)
        if deep:
            band *= SIXTEEN_TO_EIGHT_BITS
        np.clip(np.rint(band, out=band), 0, 255, out=band)
        out[top:top + rows] = band
    return out


SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# Modes a photo's embedded colour profile is applied in, and the mode each comes out in.
PROFILE_OUTPUT_MODES = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB"}


def in_srgb(image: Image.Image) -> Image.Image:
    """The pixels converted to sRGB from the colour profile the photo embeds (an iPhone's
    Display P3, Adobe RGB, a print CMYK), as a browser shows it; unchanged when it embeds none,
    as HAM10000's photos do, or one that cannot be read. Without it, a wide-gamut photo's values
    were read as sRGB: stored and shown to the model duller than it is."""
    icc = image.info.get("icc_profile")
    output_mode = PROFILE_OUTPUT_MODES.get(image.mode)
    if not icc or output_mode is None:
        return image
    try:
        embedded = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.profileToProfile(image, embedded, SRGB, outputMode=output_mode)
    except (ImageCms.PyCMSError, OSError, ValueError):  # a damaged or unsupported profile
        return image


def alpha_from_key(image: Image.Image) -> Image.Image:
    """An image with a transparent colour (a PNG's tRNS: palette entries, or one RGB or grey
    value) with an alpha channel instead, its colour profile kept: applied before in_srgb,
    which changes the colours and so would leave the key matching none of them."""
    if "transparency" not in image.info:
        return image
    return image.convert("LA" if image.mode == "L" else "RGBA")


def flattened_rgb(image: Image.Image) -> Image.Image:
    """RGB, an image with an alpha channel laid over white."""
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def to_rgb(source, min_side: int | None = None, *, original: bool = False) -> Image.Image:
    """Decoded (a JPEG at a reduced scale with min_side), upright (EXIF orientation), 8-bit sRGB
    image of the pixels alone: its info is empty, so no metadata (EXIF, XMP, a comment, the
    colour profile once applied) travels on, into a saved copy either (Pillow's JPEG saver writes
    im.info["comment"] unasked)."""
    image = to_8_bits(upright(open_image(source, min_side, original=original)))
    image = flattened_rgb(in_srgb(alpha_from_key(image)))
    if image is source:
        image = image.copy()  # the caller's own image keeps its info
    image.info = {}
    return image


def turns(image_size: tuple[int, int], size: tuple[int, int]) -> bool:
    """Whether an image of image_size is portrait where size (width, height) is landscape, or
    the other way round: resized as it is, its content would be stretched, by 1.78x for a
    portrait 4:3 photo at a 4:3 landscape size."""
    (image_width, image_height), (width, height) = image_size, size
    return (image_width - image_height) * (width - height) < 0


def oriented_like(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The image turned a quarter anticlockwise if its orientation differs from size's. The
    model learned with rotated copies of its photos, so a turned photo is rated as well."""
    return image.transpose(Image.Transpose.ROTATE_90) if turns(image.size, size) else image


def turned_back(array: np.ndarray, image_size: tuple[int, int],
                size: tuple[int, int]) -> np.ndarray:
    """An array (height, width, ...) made from oriented_like(image, size) turned back to line up
    with the image of image_size."""
    return np.rot90(array, k=-1) if turns(image_size, size) else array


def preprocess(source, size: tuple[int, int], *, original: bool = False) -> np.ndarray:
    """uint8 array of shape (height, width, 3) for an input size given as (width, height). A
    portrait photo is turned to landscape first (see oriented_like): HAM10000's are all
    landscape, and a squashed round lesion would look asymmetric. original: as decoded()'s."""
    image = oriented_like(to_rgb(source, decode_side(size), original=original), size)
    width, height = size
    if image.size != (width, height):
        image = image.resize((width, height), Image.BILINEAR, reducing_gap=None)
    return np.asarray(image, dtype=np.uint8).copy()
