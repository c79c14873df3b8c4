"""ml.preprocessing's opening of images, shared by the site's uploads, its worker and `python -m
ml predict`: a JPEG cut short, pixel bombs, a damaged AVIF, and 16-bit greyscale images."""

import io
import tracemalloc
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from PIL import Image

from diagnoses.images import sanitize_upload
from ml.errors import ImageError
from ml.preprocessing import (MAX_PIXELS, TooManyPixels, UnknownFormat, open_image, opened,
                              preprocess, to_8_bits, to_rgb)
from ml.synthetic import draw_lesion
from tests.unit.test_intake_formats import as_a_camera_saves_it, saved
from tests.unit.test_uploads import upload

MODEL_INPUT = (160, 120)


def cut_short(data: bytes, fraction: float) -> bytes:
    """The first fraction of a JPEG with its end-of-image marker put back."""
    return data[:int(len(data) * fraction)] + b"\xff\xd9"


# --- a JPEG cut short ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "save"), [("JPEG", saved), ("MPO", as_a_camera_saves_it)])
def test_a_jpeg_cut_short_is_refused_by_the_preprocessing_the_site_and_the_cli_share(fmt, save):
    intact = save(draw_lesion("mel", size=(1600, 1200), seed=3), quality=92)
    assert Image.open(io.BytesIO(intact)).format == fmt
    assert preprocess(intact, MODEL_INPUT).shape == (120, 160, 3)

    # libjpeg decodes the half that is there, fills the rest with mid-grey and raises nothing
    with pytest.raises(ImageError, match="cut short"):
        preprocess(cut_short(intact, 0.5), MODEL_INPUT, original=True)  # at a reduced scale
    with pytest.raises(ImageError, match="cut short"):
        to_rgb(cut_short(intact, 0.5), original=True)  # at full scale, as an upload is


def test_a_jpeg_cut_near_its_end_is_refused_at_a_reduced_scale_whenever_it_is_at_full_scale():
    # At 1/4 scale the last row of blocks is 2 rows high, at 1/8 one: checking 8 rows there, as
    # at full scale, let a JPEG missing its last 8 to 63 rows through.
    intact = saved(draw_lesion("mel", size=(1600, 1200), seed=3), quality=92)
    refused = 0
    for fraction in np.linspace(0.97, 0.999, 15):
        cut = cut_short(intact, fraction)
        try:
            to_rgb(cut, original=True)
        except ImageError:
            refused += 1
            for min_side in (150, 300, 600):  # decoded at 1/8, 1/4 and 1/2
                with pytest.raises(ImageError, match="cut short"):
                    to_rgb(cut, min_side, original=True)
    assert refused >= 5  # the cuts that leave at least 8 rows of grey at full scale


def test_a_photo_with_a_mid_grey_bottom_edge_is_classified_at_any_scale():
    pixels = np.array(draw_lesion("mel", size=(1600, 1200), seed=3), dtype=np.float64)
    pixels[-64:] = 128 + np.random.default_rng(0).normal(0, 2, pixels[-64:].shape)
    photo = saved(Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8)), quality=92)

    assert to_rgb(photo, original=True).size == (1600, 1200)
    for min_side in (150, 300, 600):
        assert to_rgb(photo, min_side, original=True).width < 1600


def test_the_stored_copy_of_a_png_with_mid_grey_bottom_rows_is_classified():
    # The upload check refuses only a JPEG sent cut short; the site's JPEG copy of a PNG (a padded
    # screenshot) ends in the same mid-grey rows, and the worker must classify it.
    pixels = np.array(draw_lesion("mel", size=(640, 480), seed=3))
    pixels[-48:] = 128
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    stored = sanitize_upload(upload(png.getvalue(), "padded.png", "image/png")).image_jpeg

    assert preprocess(stored, MODEL_INPUT).shape == (120, 160, 3)  # as the worker reads it
    with pytest.raises(ImageError, match="cut short"):  # what an upload of that copy would meet
        preprocess(stored, MODEL_INPUT, original=True)


# --- pixel bombs ---------------------------------------------------------------------------------


def png_of(size, mode="1") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format="PNG", optimize=True)
    return out.getvalue()


@pytest.mark.parametrize(("size", "counted"), [((10_000, 7_000), "70,000,000 pixels (10000×7000)"),
                                               ((20_000, 20_000), "400,000,000 pixels")])
def test_an_image_over_the_pixel_limit_is_refused_naming_its_pixel_count(size, counted):
    # Pillow only warns (DecompressionBombWarning) up to twice its limit and refuses above it
    data = png_of(size)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        with pytest.raises(TooManyPixels) as refused:
            open_image(data)
    assert str(refused.value) == f"too many pixels: {counted}, over the limit of 64,000,000"
    assert isinstance(refused.value, ImageError)
    assert not [w for w in warned if issubclass(w.category, Image.DecompressionBombWarning)]


def test_an_image_at_the_pixel_limit_opens():
    assert MAX_PIXELS == 8_000 * 8_000
    assert open_image(png_of((8_000, 8_000))).size == (8_000, 8_000)


def test_threads_opening_images_at_once_leave_the_warning_filters_as_they_were():
    # opening swaps the warning filters for a moment (see opened): training decodes its photos
    # in 8 threads, and threads putting back each other's filters left one installed for good
    # (in 4 runs of 4 out of 4 without the lock)
    data = png_of((60, 40), "RGB")
    before = list(warnings.filters)
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert all(image.size == (60, 40) for image in pool.map(lambda _: opened(data), range(20_000)))
    assert warnings.filters == before


def test_an_upload_over_the_pixel_limit_is_still_told_the_limit_in_megapixels():
    with pytest.raises(ValidationError) as caught:
        sanitize_upload(upload(png_of((10_000, 7_000)), "bomb.png", "image/png"))
    assert caught.value.code == "too_many_pixels"
    assert caught.value.messages[0] == (
        "The image is too large (over 64 megapixels); the limit is 40 megapixels.")


# --- a damaged AVIF or HEIC ----------------------------------------------------------------------


@cache
def lesion_saved_as(fmt) -> bytes:
    return saved(draw_lesion("mel", size=(600, 450), seed=3), fmt, quality=90)


@pytest.mark.parametrize("fmt", ["AVIF", "HEIF"])
@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_an_avif_or_heic_cut_short_is_damaged_not_of_an_unknown_format(fmt, fraction):
    intact = lesion_saved_as(fmt)
    assert intact[8:12] in (b"avif", b"heic")
    cut = intact[:int(len(intact) * fraction)]

    with pytest.raises(ImageError) as refused:
        preprocess(cut, MODEL_INPUT)
    assert not isinstance(refused.value, UnknownFormat), str(refused.value)

    with pytest.raises(ValidationError) as caught:
        sanitize_upload(upload(cut, f"m.{fmt.lower()}", f"image/{fmt.lower()}"))
    assert caught.value.code == "corrupt"
    assert caught.value.messages[0] == "The image file is damaged or incomplete: please upload it again."


def test_a_truncated_avif_is_named_damaged_on_the_command_line():
    intact = lesion_saved_as("AVIF")
    with pytest.raises(ImageError) as refused:
        preprocess(intact[:int(len(intact) * 0.6)], MODEL_INPUT)
    assert str(refused.value) == ("not a decodable image: a damaged or incomplete HEIF/AVIF file "
                                  "(brand avif)")


@pytest.mark.parametrize("data", [b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(64),
                                  b"this is plain text, not a photo\n" * 20])
def test_a_file_of_another_kind_is_still_of_an_unknown_format(data):
    # an MP4 video starts with a file type box too, of another brand
    with pytest.raises(UnknownFormat, match="unknown or unsupported format"):
        preprocess(data, MODEL_INPUT)
    with pytest.raises(ValidationError) as caught:
        sanitize_upload(upload(data, "m.jpg"))
    assert caught.value.code == "not_an_image"


# --- 16-bit greyscale ----------------------------------------------------------------------------


def eight_bits_as_before(samples: np.ndarray, deep: bool) -> np.ndarray:
    """to_8_bits's arithmetic as it was, on the whole image in float64."""
    as_float = np.asarray(samples, dtype=np.float64)
    scaled = as_float * (255 / 65535) if deep else as_float
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def test_every_16_bit_level_gets_the_8_bit_level_it_had():
    levels = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    grey = to_8_bits(Image.fromarray(levels))
    assert grey.mode == "L"
    assert np.array_equal(np.asarray(grey), eight_bits_as_before(levels, deep=True))


@pytest.mark.parametrize(("dtype", "low", "high", "deep"), [
    (np.int32, -70_000, 140_000, True),  # I: scaled, clipped at both ends
    (np.int32, -5, 256, False),          # I of 8-bit values: kept, clipped
    (np.float32, -3.0, 300_000.0, True),  # F: scaled
    (np.float32, -3.0, 255.0, False),    # F of 8-bit values: rounded, ties to even
])
def test_a_deep_grey_image_larger_than_a_band_gets_the_8_bit_levels_it_had(dtype, low, high, deep):
    rng = np.random.default_rng(1)
    samples = (rng.uniform(low, high, (1500, 1000)) if dtype == np.float32
               else rng.integers(low, high, (1500, 1000))).astype(dtype)
    samples[0, :6] = [0.5, 1.5, 2.5, 253.5, 254.5, 255]  # ties, and a value that shows 8 bits
    if deep:
        samples[0, 6] = high
    grey = to_8_bits(Image.fromarray(samples))
    assert np.array_equal(np.asarray(grey), eight_bits_as_before(samples, deep))


def test_a_transparent_16_bit_grey_keeps_its_transparency():
    levels = np.full((90, 120), 30000, dtype=np.uint16)
    levels[:, :40] = 1000
    image = Image.fromarray(levels)
    image.info["transparency"] = 1000

    grey = to_8_bits(image)

    assert grey.mode == "LA"
    assert grey.getpixel((10, 10)) == (4, 0) and grey.getpixel((100, 10)) == (117, 255)


def test_a_16_bit_grey_image_is_converted_without_float64_copies_of_it():
    # 9 megapixels: the whole image in float64 took 32 bytes a pixel at the peak
    image = Image.fromarray(np.random.default_rng(0).integers(0, 65536, (3000, 3000), dtype=np.uint16))
    image.info["transparency"] = 1000
    tracemalloc.start()
    try:
        grey = to_8_bits(image)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert grey.mode == "LA"
    assert peak < 8 * 3000 * 3000
