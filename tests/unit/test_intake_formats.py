"""Uploads a review found mishandled: a camera's MPO refused, a black-and-white photo rated as if
in colour, a JPEG cut short accepted, a PNG's transparent colour kept."""

import io

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from PIL import Image, ImageCms

from diagnoses.images import sanitize_upload
from diagnoses.models import PHOTO_ISSUE_NAMES
from ml import quality
from ml.preprocessing import to_rgb
from ml.synthetic import draw_lesion
from tests.unit.test_uploads import ORIENTATION, is_dark, upload


def lesion_photo(size=(600, 450)):
    """A sharp, evenly lit, colourful synthetic mole on skin (as in test_photo_checks)."""
    return draw_lesion("mel", size=size, seed=3)


def saved(image, fmt="JPEG", **save_kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **save_kwargs)
    return out.getvalue()


# --- a camera's MPO ------------------------------------------------------------------------------


def as_a_camera_saves_it(photo, **save_kwargs) -> bytes:
    """The photo as a JPEG followed by a green 320x240 preview, as Canon, Sony and Nikon cameras
    save it: an MPF block lists both, and Pillow reads it as MPO."""
    preview = Image.new("RGB", (320, 240), (0, 255, 0))
    return saved(photo, "MPO", save_all=True, append_images=[preview], **save_kwargs)


def camera_mpo(orientation=6) -> bytes:
    """A 1200x900 camera photo, its left half dark, whose EXIF says to turn it."""
    photo = Image.new("RGB", (1200, 900), (230, 190, 170))
    photo.paste((60, 30, 20), (0, 0, 600, 900))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return as_a_camera_saves_it(photo, exif=exif.tobytes())


def test_a_camera_mpo_is_stored_upright_as_its_photo_without_the_preview():
    data = camera_mpo()
    assert Image.open(io.BytesIO(data)).format == "MPO"

    clean = sanitize_upload(upload(data, "IMG_0001.JPG"))

    stored = Image.open(io.BytesIO(clean.image_jpeg))
    assert stored.format == "JPEG" and getattr(stored, "n_frames", 1) == 1
    assert (clean.width, clean.height) == stored.size == (900, 1200)
    # turned once, clockwise: the dark left half is now on top; no green preview anywhere
    assert is_dark(stored.getpixel((450, 300))) and not is_dark(stored.getpixel((450, 900)))
    assert stored.getpixel((450, 900))[1] < 220


def test_the_worker_decodes_an_mpo_at_a_reduced_scale_as_it_does_a_jpeg():
    # 1200x900 at half scale keeps both sides over 400; then turned upright
    assert to_rgb(camera_mpo(), min_side=400).size == (450, 600)


# --- black-and-white photos ----------------------------------------------------------------------


def paler(image, colourfulness):
    """The image with its colour faded to the given colourfulness (ml.quality.measure): blending
    with its grey copy scales each pixel's distance from grey alike."""
    alpha = colourfulness / quality.measure(image).colourfulness
    return Image.blend(image.convert("L").convert("RGB"), image, alpha)


def test_a_black_and_white_photo_is_flagged_grey_and_its_colour_original_is_not():
    photo = lesion_photo()
    assert quality.photo_issues(photo) == []
    assert quality.photo_issues(photo.convert("L").convert("RGB")) == ["grey"]


def test_a_photo_as_pale_as_hams_palest_is_not_called_grey():
    photo = lesion_photo()
    assert quality.photo_issues(paler(photo, 6.0)) == []  # HAM10000's 1st percentile
    assert quality.photo_issues(paler(photo, 1.0)) == ["grey"]


def test_a_pale_dark_photo_is_dark_not_also_grey():
    # darkening fades colour with the light: 6.0 at 0.3x the brightness is 1.8, under the limit
    dark = Image.eval(paler(lesion_photo(), 6.0), lambda value: int(value * 0.3))
    assert quality.photo_issues(dark) == ["dark"]


def test_a_black_and_white_upload_is_flagged_and_named_for_the_patient():
    clean = sanitize_upload(upload(saved(lesion_photo().convert("L"), quality=92)))

    assert clean.photo_issues == ["grey"]
    assert set(PHOTO_ISSUE_NAMES) == set(quality.ISSUES)  # every flag reads as words
    assert PHOTO_ISSUE_NAMES["grey"] == "black-and-white"


# --- a JPEG cut short ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "save"), [("JPEG", saved), ("MPO", as_a_camera_saves_it)])
def test_a_jpeg_cut_short_that_still_ends_like_a_jpeg_is_refused_as_damaged(fmt, save):
    intact = save(lesion_photo((1600, 1200)), quality=92)
    assert Image.open(io.BytesIO(intact)).format == fmt
    assert sanitize_upload(upload(intact)).width == 1600

    # libjpeg decodes the half that is there, fills the rest with grey and raises nothing
    cut = intact[:len(intact) // 2] + b"\xff\xd9"
    with pytest.raises(ValidationError) as caught:
        sanitize_upload(upload(cut))
    assert caught.value.code == "corrupt"


def test_a_photo_with_a_mid_grey_bottom_edge_is_not_taken_for_one_cut_short():
    # a grey card along the bottom, mid-grey give or take a camera's faint noise
    pixels = np.array(lesion_photo((1600, 1200)), dtype=np.float64)
    pixels[-64:] = 128 + np.random.default_rng(0).normal(0, 2, pixels[-64:].shape)
    photo = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))

    assert sanitize_upload(upload(saved(photo, quality=92))).height == 1200


# --- a PNG's transparent colour ------------------------------------------------------------------


def keyed_png(mode, key, level, **save_kwargs) -> bytes:
    """A 120x90 PNG of one level with its top-left 10x10 in the transparent colour key."""
    dtype = np.uint16 if mode == "I;16" else np.uint8
    shape = (90, 120, 3) if mode == "RGB" else (90, 120)
    pixels = np.full(shape, level, dtype=dtype)
    pixels[:10, :10] = key
    return saved(Image.fromarray(pixels), "PNG", transparency=key, **save_kwargs)


@pytest.mark.parametrize(
    ("mode", "key", "level", "opaque"),
    [
        ("RGB", (0, 0, 0), 100, (100, 100, 100)),
        ("L", 0, 100, (100, 100, 100)),
        # at 8 bits the key (1000 of 65535) and the grey beside it (1001) are both 4
        ("I;16", 1000, 1001, (4, 4, 4)),
    ],
)
def test_a_pngs_transparent_colour_is_laid_over_white(mode, key, level, opaque):
    data = keyed_png(mode, key, level)
    assert Image.open(io.BytesIO(data)).mode == mode

    rgb = to_rgb(data)

    assert rgb.mode == "RGB"
    assert rgb.getpixel((5, 5)) == (255, 255, 255)
    assert rgb.getpixel((60, 45)) == opaque


def test_a_pngs_transparent_colour_is_laid_over_white_when_it_has_a_colour_profile_too():
    # converting to sRGB makes new pixels: the key must be an alpha channel before that
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()

    rgb = to_rgb(keyed_png("RGB", (0, 0, 0), 100, icc_profile=srgb))

    assert rgb.getpixel((5, 5)) == (255, 255, 255)
    assert rgb.getpixel((60, 45)) == pytest.approx((100, 100, 100), abs=2)
