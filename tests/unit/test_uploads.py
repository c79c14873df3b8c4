"""Upload validation with real bad files: judged by content, nothing stored when refused."""

import io
import struct

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image, PngImagePlugin

from diagnoses import services
from diagnoses.images import sanitize_upload
from diagnoses.models import Diagnosis
from tests.conftest import make_image_bytes

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def upload(data: bytes, name="mole.jpg", content_type="image/jpeg"):
    return SimpleUploadedFile(name, data, content_type=content_type)


def png_with_gps() -> bytes:
    image = Image.new("RGB", (160, 120), (200, 150, 120))
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})
    out = io.BytesIO()
    image.save(out, format="PNG", exif=exif.tobytes())
    return out.getvalue()


def files_in(media_root):
    return [p for p in media_root.rglob("*") if p.is_file()] if media_root.exists() else []


@pytest.mark.parametrize(
    ("data", "name", "code"),
    [
        (b"", "empty.jpg", "empty"),
        (b"this is plain text, not a photo\n" * 20, "notes.jpg", "not_an_image"),
        (make_image_bytes()[:-600], "truncated.jpg", "corrupt"),
        (make_image_bytes(fmt="GIF"), "anim.gif", "unsupported"),
    ],
    ids=["empty", "text-renamed-jpg", "truncated-jpeg", "gif"],
)
def test_it_refuses_bad_files_by_content(data, name, code):
    with pytest.raises(ValidationError) as caught:
        sanitize_upload(upload(data, name))
    assert caught.value.code == code
    assert caught.value.messages[0]  # a sentence the patient can read


def test_it_refuses_a_decompression_bomb():
    # 8000×6000 = 48 megapixels of one colour: a few kilobytes on the wire.
    out = io.BytesIO()
    Image.new("L", (8000, 6000)).save(out, format="PNG", optimize=True)
    assert len(out.getvalue()) < 200_000
    with pytest.raises(ValidationError) as caught:
        sanitize_upload(upload(out.getvalue(), "bomb.png", "image/png"))
    assert caught.value.code == "too_many_pixels"


def test_it_refuses_files_over_20_mb(settings):
    settings.MAX_UPLOAD_BYTES = 1000
    with pytest.raises(ValidationError) as caught:
        sanitize_upload(upload(make_image_bytes(size=(400, 300))))
    assert caught.value.code == "too_large"


def test_it_strips_gps_exif_from_a_png():
    original = png_with_gps()
    assert GPS_IFD in Image.open(io.BytesIO(original)).getexif()

    clean = sanitize_upload(upload(original, "gps.png", "image/png"))

    stored = Image.open(io.BytesIO(clean.image_jpeg))
    assert stored.format == "JPEG"
    assert len(stored.getexif()) == 0
    assert b"Exif" not in clean.image_jpeg and b"PhoneMaker" not in clean.image_jpeg


def test_it_applies_exif_orientation_to_the_pixels():
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # rotate 90° clockwise on display
    landscape = make_image_bytes(size=(240, 120), exif=exif.tobytes())

    clean = sanitize_upload(upload(landscape))

    assert (clean.width, clean.height) == (120, 240)
    assert ORIENTATION not in Image.open(io.BytesIO(clean.image_jpeg)).getexif()


def test_it_accepts_webp_and_png_with_transparency():
    webp = make_image_bytes(fmt="WEBP")
    rgba = Image.new("RGBA", (160, 120), (0, 0, 0, 0))
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    assert sanitize_upload(upload(webp, "m.webp", "image/webp")).width == 200
    clean = sanitize_upload(upload(out.getvalue(), "m.png", "image/png"))
    assert Image.open(io.BytesIO(clean.image_jpeg)).getpixel((5, 5)) == pytest.approx((255, 255, 255), abs=3)


def half_dark_photo(fmt, **save_kwargs) -> bytes:
    """240x120, the left half dark: where the dark half ends up shows how it was rotated."""
    image = Image.new("RGB", (240, 120), (230, 190, 170))
    image.paste((60, 30, 20), (0, 0, 120, 120))
    out = io.BytesIO()
    image.save(out, format=fmt, **save_kwargs)
    return out.getvalue()


def is_dark(pixel):
    return sum(pixel) < 300


def test_it_stores_an_iphone_heic_photo_upright_once_as_a_jpeg():
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # as an iPhone held upright writes it: rotate 90° clockwise on display
    exif[0x010F] = "Apple"
    heic = half_dark_photo("HEIF", quality=90, exif=exif.tobytes())
    assert heic[4:12] == b"ftypheic"

    clean = sanitize_upload(upload(heic, "IMG_0001.HEIC", "image/heic"))

    stored = Image.open(io.BytesIO(clean.image_jpeg))
    assert stored.format == "JPEG" and len(stored.getexif()) == 0 and b"Apple" not in clean.image_jpeg
    # Rotated once, clockwise: the dark left half is now on top (twice would put it right).
    assert (clean.width, clean.height) == (120, 240)
    assert is_dark(stored.getpixel((50, 40))) and not is_dark(stored.getpixel((50, 160)))


def test_it_accepts_an_avif_photo():
    clean = sanitize_upload(upload(half_dark_photo("AVIF", quality=90), "m.avif", "image/avif"))

    stored = Image.open(io.BytesIO(clean.image_jpeg))
    assert (clean.width, clean.height) == (240, 120)
    assert is_dark(stored.getpixel((40, 50))) and not is_dark(stored.getpixel((160, 50)))


@pytest.mark.django_db
def test_it_stores_nothing_when_the_upload_is_refused(owner, private_media):
    with pytest.raises(ValidationError):
        services.diagnosis_create(owner=owner, image=upload(make_image_bytes()[:300]))
    assert Diagnosis.objects.count() == 0
    assert files_in(private_media) == []


@pytest.mark.django_db
def test_it_stores_a_clean_copy_and_a_thumbnail(owner, private_media):
    original = png_with_gps()
    diagnosis = services.diagnosis_create(owner=owner, image=upload(original, "gps.png", "image/png"))

    assert diagnosis.status == Diagnosis.Status.QUEUED
    assert len(diagnosis.sha256) == 64
    stored = Image.open(diagnosis.image.path)
    assert stored.size == (160, 120) and GPS_IFD not in stored.getexif()
    assert max(Image.open(diagnosis.thumbnail.path).size) <= 320
    assert str(private_media) in diagnosis.image.path
    assert len(files_in(private_media)) == 2


# --- defects a review found ---------------------------------------------------------------------


def exif_with_a_malformed_make(orientation=6) -> bytes:
    """An EXIF block turning the photo 90° clockwise whose Make is a number (RATIONAL 1/3), not
    text, as some cameras write it: Pillow reads it, and cannot write it back."""
    make = struct.pack("<HHII", 0x010F, 5, 1, 38)  # tag, type RATIONAL, count, offset of 1/3
    turn = struct.pack("<HHIHH", ORIENTATION, 3, 1, orientation, 0)  # SHORT, held in the entry
    ifd = struct.pack("<H", 2) + make + turn + struct.pack("<I", 0)
    return b"Exif\0\0" + b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<II", 1, 3)


def avif_with_its_pixels_zeroed() -> bytes:
    """An AVIF whose coded picture (the mdat box) is all zeros: AVIF's decoder raises
    RuntimeError, not an OSError."""
    data = bytearray(half_dark_photo("AVIF", quality=90))
    offset = 0
    while data[offset + 4:offset + 8] != b"mdat":
        offset += struct.unpack(">I", data[offset:offset + 4])[0]
    length = struct.unpack(">I", data[offset:offset + 4])[0]
    data[offset + 8:offset + length] = bytes(length - 8)
    return bytes(data)


def sixteen_bit_grey_png(level=30000) -> bytes:
    """A 16-bit greyscale PNG (Pillow opens it as I;16) of one level out of 65535."""
    out = io.BytesIO()
    Image.fromarray(np.full((120, 160), level, dtype=np.uint16)).save(out, format="PNG")
    return out.getvalue()


def test_it_turns_a_photo_upright_whose_exif_has_a_malformed_tag():
    jpeg = half_dark_photo("JPEG", quality=95, exif=exif_with_a_malformed_make())
    assert Image.open(io.BytesIO(jpeg)).getexif()[ORIENTATION] == 6

    clean = sanitize_upload(upload(jpeg))

    stored = Image.open(io.BytesIO(clean.image_jpeg))
    assert (clean.width, clean.height) == (120, 240)
    assert is_dark(stored.getpixel((50, 40))) and not is_dark(stored.getpixel((50, 160)))


def test_it_refuses_a_damaged_avif_as_damaged():
    with pytest.raises(RuntimeError):  # what Pillow raises for it
        Image.open(io.BytesIO(avif_with_its_pixels_zeroed())).load()

    with pytest.raises(ValidationError) as caught:
        sanitize_upload(upload(avif_with_its_pixels_zeroed(), "m.avif", "image/avif"))
    assert caught.value.code == "corrupt"


def test_it_strips_a_jpeg_comment_and_a_png_text_comment():
    image = Image.open(io.BytesIO(make_image_bytes()))
    jpeg, png = io.BytesIO(), io.BytesIO()
    image.save(jpeg, format="JPEG", comment=b"Jane Doe, born 1970-01-01")
    text = PngImagePlugin.PngInfo()
    text.add_text("comment", "Jane Doe, born 1970-01-01")
    image.save(png, format="PNG", pnginfo=text)

    for data, name in ((jpeg.getvalue(), "m.jpg"), (png.getvalue(), "m.png")):
        assert b"Jane Doe" in data
        clean = sanitize_upload(upload(data, name))
        assert b"Jane Doe" not in clean.image_jpeg and b"Jane Doe" not in clean.thumbnail_jpeg


def test_it_scales_a_16_bit_grey_png_to_8_bits_instead_of_clipping_it_to_white():
    assert Image.open(io.BytesIO(sixteen_bit_grey_png())).mode == "I;16"

    clean = sanitize_upload(upload(sixteen_bit_grey_png(30000), "m.png", "image/png"))

    stored = Image.open(io.BytesIO(clean.image_jpeg))
    assert stored.getpixel((60, 45)) == pytest.approx((117, 117, 117), abs=2)  # 30000 / 257


def test_it_says_a_file_just_over_the_limit_is_too_large_without_contradicting_itself():
    just_over, well_over = upload(make_image_bytes()), upload(make_image_bytes())
    just_over.size, well_over.size = 20 * 1_048_576 + 1, 25 * 1_048_576

    messages = []
    for too_large in (just_over, well_over):
        with pytest.raises(ValidationError) as caught:
            sanitize_upload(too_large)
        messages.append(caught.value.messages[0])

    assert messages == ["The file is too large; the limit is 20 MB.",
                        "The file is too large (25.0 MB); the limit is 20 MB."]


def test_it_gives_the_megapixel_limit_for_an_image_pillow_refuses_itself():
    # 9000×8000 = 72 megapixels, over Pillow's own limit (64): it refuses before we see the size.
    out = io.BytesIO()
    Image.new("L", (9000, 8000)).save(out, format="PNG", optimize=True)

    with pytest.raises(ValidationError) as caught:
        sanitize_upload(upload(out.getvalue(), "bomb.png", "image/png"))

    assert caught.value.code == "too_many_pixels"
    assert caught.value.messages[0] == (
        "The image is too large (over 64 megapixels); the limit is 40 megapixels.")


@pytest.mark.parametrize("path", ["/diagnoses/new/", "/api/v1/diagnoses/"])
def test_a_request_too_large_is_told_the_photo_limit_too(client, settings, path):
    response = client.generic("POST", path, CONTENT_LENGTH=str(settings.MAX_REQUEST_BYTES + 1),
                              **{"wsgi.input": io.BytesIO()})

    assert response.status_code == 413
    body = response.json()["detail"] if path.startswith("/api/") else response.content.decode()
    assert body.strip() == (
        "Request body too large: the limit is 25 MB. Photos must be at most 20 MB.")


# --- photos too small for the model (its input is 160×120) --------------------------------------


def flat_png(size) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (180, 120, 90)).save(out, format="PNG")
    return out.getvalue()


TOO_SMALL = [
    (flat_png((8, 8)), "icon.png", "8×8"),
    (make_image_bytes(size=(40, 30)), "thumb.jpg", "40×30"),
    (make_image_bytes(size=(400, 119)), "strip.jpg", "400×119"),
]
TOO_SMALL_IDS = ["8x8-flat-png", "40x30-jpeg", "one-pixel-short"]


def too_small_message(size: str) -> str:
    return (f"This photo is too small ({size} pixels): please upload one at least 120 pixels on "
            "its shorter side.")


@pytest.mark.parametrize(("data", "name", "size"), TOO_SMALL, ids=TOO_SMALL_IDS)
def test_it_refuses_a_photo_too_small_for_the_model_naming_its_size_and_the_minimum(data, name, size):
    with pytest.raises(ValidationError) as caught:
        sanitize_upload(upload(data, name))

    assert caught.value.code == "too_small"
    assert caught.value.messages == [too_small_message(size)]


def test_it_names_a_too_small_photos_size_as_it_is_shown_upright():
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored 40×30, shown turned a quarter: 30 wide, 40 high
    with pytest.raises(ValidationError) as caught:
        sanitize_upload(upload(make_image_bytes(size=(40, 30), exif=exif.tobytes())))

    assert caught.value.messages == [too_small_message("30×40")]


@pytest.mark.parametrize("size", [(200, 150), (160, 120), (120, 480), (1200, 120)],
                         ids=["ham10000", "the-model-input", "portrait-120-wide", "120-high"])
def test_it_accepts_a_photo_at_least_120_pixels_on_its_shorter_side(size):
    clean = sanitize_upload(upload(make_image_bytes(size=size)))

    assert (clean.width, clean.height) == size


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/diagnoses/new/", "/api/v1/diagnoses/"])
@pytest.mark.parametrize(("data", "name", "size"), TOO_SMALL[:2], ids=TOO_SMALL_IDS[:2])
def test_the_site_and_the_api_refuse_a_photo_too_small_storing_nothing(owner, client, private_media,
                                                                        path, data, name, size):
    client.force_login(owner)
    response = client.post(path, {"image": upload(data, name)})

    assert response.status_code == 400
    if path.startswith("/api/"):
        assert response.json() == {"image": [too_small_message(size)]}
    else:
        assert too_small_message(size) in response.content.decode()
    assert not Diagnosis.objects.exists()
    assert files_in(private_media) == []
