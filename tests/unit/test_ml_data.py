"""ml.data / ml.preprocessing / ml.synthetic: no TensorFlow needed, fast."""

import csv
import io
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageCms

from ml import CLASSES
from ml import data as data_mod
from ml.errors import DatasetError, ImageError
from ml.preprocessing import decode_side, preprocess, to_rgb
from ml.synthetic import draw_lesion, make_dataset


@pytest.fixture(scope="module")
def flat_dir(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("flat"), per_class=12, layout="flat", seed=1)


def test_it_reads_the_flat_layout(flat_dir):
    records = data_mod.load_records(flat_dir)
    assert len(records) == 12 * len(CLASSES)
    assert all(r.path.parent.name == "images" for r in records)
    assert {r.dx for r in records} == set(CLASSES)


def test_it_reads_the_kaggle_layout(tmp_path):
    root = make_dataset(tmp_path, per_class=4, layout="kaggle", seed=2)
    records = data_mod.load_records(root)
    assert len(records) == 4 * len(CLASSES)
    assert {r.path.parent.name for r in records} == {"HAM10000_images_part_1", "HAM10000_images_part_2"}


def test_it_makes_several_images_per_lesion(flat_dir):
    records = data_mod.load_records(flat_dir)
    assert len({r.lesion_id for r in records}) < len(records)


def test_it_refuses_a_folder_without_metadata(tmp_path):
    with pytest.raises(DatasetError, match="HAM10000_metadata.csv not found"):
        data_mod.load_records(tmp_path)


def test_it_refuses_missing_images(tmp_path):
    root = make_dataset(tmp_path, per_class=2, seed=3)
    victim = next((root / "images").glob("*.jpg"))
    victim.unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) listed .* not found.*" + victim.stem):
        data_mod.load_records(root)


def test_it_refuses_unknown_labels(tmp_path):
    root = make_dataset(tmp_path, per_class=2, seed=4)
    csv_path = root / "HAM10000_metadata.csv"
    rows = list(csv.DictReader(csv_path.open()))
    rows[0]["dx"] = "scc"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DatasetError, match="unknown label.*scc"):
        data_mod.load_records(root)


def test_it_splits_by_lesion_stratified_and_reproducibly(tmp_path):
    root = make_dataset(tmp_path, per_class=20, seed=5, size=(40, 30))
    records = data_mod.load_records(root)
    train, val = data_mod.split_by_lesion(records, val_fraction=0.25, seed=7)
    assert {r.lesion_id for r in train}.isdisjoint({r.lesion_id for r in val})
    assert len(train) + len(val) == len(records)
    for dx in CLASSES:  # every class on both sides, about a quarter of its lesions in val
        lesions = {r.lesion_id for r in records if r.dx == dx}
        val_lesions = {r.lesion_id for r in val if r.dx == dx}
        assert 1 <= len(val_lesions) <= round(0.25 * len(lesions)) + 1
        assert any(r.dx == dx for r in train)
    again = data_mod.split_by_lesion(records, val_fraction=0.25, seed=7)[1]
    assert [r.image_id for r in again] == [r.image_id for r in val]
    other = data_mod.split_by_lesion(records, val_fraction=0.25, seed=8)[1]
    assert {r.image_id for r in other} != {r.image_id for r in val}
    info = data_mod.split_info(train, val, seed=7, val_fraction=0.25)
    assert info["n_val_images"] == len(val) and info["n_val_lesions"] == len({r.lesion_id for r in val})
    assert info["val_image_ids_sha256"] == data_mod.ids_sha256(r.image_id for r in reversed(val))


def test_it_preprocesses_training_files_and_uploaded_bytes_identically(flat_dir):
    records = data_mod.load_records(flat_dir)[:5]
    size = (48, 36)
    batch = data_mod.decode_all(records, size)
    for record, row in zip(records, batch):
        raw = record.path.read_bytes()
        assert np.array_equal(row, preprocess(raw, size))
        assert np.array_equal(row, preprocess(Image.open(io.BytesIO(raw)), size))
    assert batch.dtype == np.uint8 and batch.shape == (5, 36, 48, 3)


def test_it_applies_exif_orientation_and_converts_to_rgb():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    image.save(buf, format="JPEG", exif=exif, quality=95)
    out = preprocess(buf.getvalue(), (20, 40))
    assert out.shape == (40, 20, 3)
    assert out[5, 10, 2] > 200 and out[35, 10, 0] > 200  # blue on top after rotation
    rgba = Image.new("RGBA", (10, 10), (0, 255, 0, 255))
    assert preprocess(rgba, (10, 10))[0, 0].tolist() == [0, 255, 0]
    assert preprocess(Image.new("L", (10, 10), 128), (10, 10))[0, 0].tolist() == [128, 128, 128]


# Display P3's primaries (adapted to D50, as in Apple's profile); its tone curve is sRGB's.
DISPLAY_P3_COLORANTS = {b"rXYZ": (0.5151, 0.2412, -0.0011), b"gXYZ": (0.2919, 0.6922, 0.0419),
                        b"bXYZ": (0.1572, 0.0666, 0.7841)}


def _display_p3_profile() -> bytes:
    """An ICC profile of an iPhone's wide-gamut colour space: Pillow's sRGB profile with the
    three primaries' colorant tags rewritten."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (n_tags,) = struct.unpack(">I", profile[128:132])
    for i in range(n_tags):
        signature, offset, _ = struct.unpack(">4sII", profile[132 + 12 * i:144 + 12 * i])
        if signature in DISPLAY_P3_COLORANTS:  # an XYZ tag: 8 bytes of header, 3 s15Fixed16
            values = (round(v * 65536) for v in DISPLAY_P3_COLORANTS[signature])
            profile[offset + 8:offset + 20] = struct.pack(">3i", *values)
    return bytes(profile)


def _png_bytes(image, **save_kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", **save_kwargs)
    return buf.getvalue()


def test_it_converts_a_wide_gamut_photo_to_srgb_as_a_browser_shows_it():
    p3 = _display_p3_profile()
    skin = (200, 100, 100)
    # The same values mean a more saturated colour in Display P3: redder, less green in sRGB.
    photo = Image.new("RGB", (40, 30), skin)
    red, green, blue = to_rgb(_png_bytes(photo, icc_profile=p3)).getpixel((0, 0))
    assert red >= 210 and green <= 96 and blue <= 99
    converted = to_rgb(_jpeg_bytes(photo, icc_profile=p3))
    assert converted.info == {}  # applied, so not handed on to a stored copy
    assert preprocess(_jpeg_bytes(photo, icc_profile=p3), (40, 30))[0, 0, 0] >= 210
    # Transparent pixels are converted, then laid over white.
    half = to_rgb(_png_bytes(Image.new("RGBA", (40, 30), (*skin, 128)), icc_profile=p3))
    assert half.getpixel((0, 0))[0] >= 230 and half.getpixel((0, 0))[1] <= 178
    # An sRGB profile, a damaged one and none leave the values as they are.
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for profile in (srgb, b"not a profile", None):
        kwargs = {"icc_profile": profile} if profile else {}
        assert to_rgb(_png_bytes(photo, **kwargs)).getpixel((0, 0)) == skin


def _jpeg_bytes(image, **save_kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=92, **save_kwargs)
    return buf.getvalue()


def test_it_decodes_a_large_jpeg_at_a_reduced_scale_with_the_same_model_input():
    photo = draw_lesion("mel", size=(4000, 3000), seed=2)
    data = _jpeg_bytes(photo)

    assert to_rgb(data, decode_side((160, 120))).size == (1000, 750)  # 1/4: 1/8 would be under 400
    assert to_rgb(data).size == (4000, 3000)
    reduced = preprocess(data, (160, 120)).astype(int)
    full = np.asarray(to_rgb(data).resize((160, 120), Image.BILINEAR, reducing_gap=None)).astype(int)
    assert np.abs(reduced - full).mean() < 2.0  # grey levels of 255
    # Rotated by EXIF, it still decodes with both sides long enough.
    exif = Image.Exif()
    exif[0x0112] = 6
    assert to_rgb(_jpeg_bytes(photo, exif=exif), decode_side((160, 120))).size == (750, 1000)
    # HAM10000's photos (600x450, 200x150) decode at full size: training sees them unchanged.
    assert to_rgb(_jpeg_bytes(photo.resize((600, 450))), decode_side((160, 120))).size == (600, 450)


def test_it_raises_image_error_for_bytes_that_are_no_image():
    with pytest.raises(ImageError, match="unknown or unsupported format") as raised:
        preprocess(b"<html>not an image</html>", (48, 36))
    assert "BytesIO" not in str(raised.value)
    with pytest.raises(ImageError):
        preprocess(b"", (48, 36))


def test_it_imports_ml_without_tensorflow():
    code = ("import sys, ml, ml.inference, ml.errors, ml.synthetic, ml.training, ml.evaluation; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_it_has_no_django_imports():
    import pathlib
    import re

    import ml

    for path in pathlib.Path(ml.__file__).parent.glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+django", path.read_text(), re.M), path


def _write_metadata(root, text, encoding="utf-8"):
    (root / "HAM10000_metadata.csv").write_bytes(text.encode(encoding))


def _metadata_text(root):
    return (root / "HAM10000_metadata.csv").read_text(encoding="utf-8")


def test_it_reads_a_metadata_file_that_excel_saved_with_a_byte_order_mark(tmp_path):
    root = make_dataset(tmp_path, per_class=2, seed=11, size=(40, 30))
    _write_metadata(root, _metadata_text(root), encoding="utf-8-sig")
    assert (root / "HAM10000_metadata.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    records = data_mod.load_records(root)
    assert len(records) == 2 * len(CLASSES) and all(r.lesion_id.startswith("HAM_") for r in records)


def test_it_refuses_a_metadata_file_that_is_not_utf8_with_a_dataset_error(tmp_path):
    root = make_dataset(tmp_path, per_class=2, seed=12, size=(40, 30))
    _write_metadata(root, _metadata_text(root).replace("back", "tête"), encoding="latin-1")
    with pytest.raises(DatasetError, match="not UTF-8"):
        data_mod.load_records(root)


def _with_field(row, index, value):
    fields = row.split(",")
    fields[index] = value
    return ",".join(fields)


# A short row once met the unknown-label check with None as its dx: a TypeError from sorted().
@pytest.mark.parametrize("damage, missing", [
    (lambda row: row.split(",")[0], "image_id, dx"),
    (lambda row: _with_field(row, 0, ""), "lesion_id"),
    (lambda row: _with_field(row, 2, " "), "dx"),
])
def test_it_names_the_line_of_a_row_without_its_lesion_image_or_label(tmp_path, damage, missing):
    root = make_dataset(tmp_path, per_class=2, seed=13, size=(40, 30))
    header, *rows = _metadata_text(root).splitlines()
    rows[2] = damage(rows[2])  # line 4 of the file, the header being line 1
    rows[3] = _with_field(rows[3], 2, "scc")  # and an unknown label after it
    _write_metadata(root, "\n".join([header, *rows]) + "\n")
    with pytest.raises(DatasetError, match=f"line 4: empty or missing {missing}$"):
        data_mod.load_records(root)


def test_it_refuses_an_image_listed_twice(tmp_path):
    # under two lesion_ids, one photo could land in both training and validation
    root = make_dataset(tmp_path, per_class=2, seed=14, size=(40, 30))
    header, *rows = _metadata_text(root).splitlines()
    twin = _with_field(rows[0], 0, "HAM_9999999")
    _write_metadata(root, "\n".join([header, *rows, twin]) + "\n")
    image_id = rows[0].split(",")[1]
    with pytest.raises(DatasetError, match=f"line {len(rows) + 2}: image_id {image_id} is listed again "
                                           r"\(first on line 2\)"):
        data_mod.load_records(root)


def test_the_split_info_lists_the_sorted_image_ids_its_hashes_cover(tmp_path):
    root = make_dataset(tmp_path, per_class=8, seed=15, size=(40, 30))
    train, val = data_mod.split_by_lesion(data_mod.load_records(root), val_fraction=0.25, seed=3)
    info = data_mod.split_info(list(reversed(train)), val, seed=3, val_fraction=0.25)
    assert info["train_image_ids"] == sorted(r.image_id for r in train)
    assert info["val_image_ids"] == sorted(r.image_id for r in val)
    assert data_mod.ids_sha256(info["train_image_ids"]) == info["train_image_ids_sha256"]
    assert data_mod.ids_sha256(info["val_image_ids"]) == info["val_image_ids_sha256"]


def test_it_picks_the_sorted_first_of_an_image_found_twice_as_the_same_file(tmp_path):
    # the Kaggle download repeats its folders: the same photo in two places is one photo
    root = make_dataset(tmp_path, per_class=2, seed=16, size=(40, 30))
    photo = sorted((root / "images").iterdir())[0]
    again = root / "HAM10000_images_part_1" / photo.name
    again.parent.mkdir()
    again.write_bytes(photo.read_bytes())
    chosen = {r.image_id: r.path for r in data_mod.load_records(root)}[photo.stem]
    assert chosen == min(photo, again, key=str)  # whatever order the disk lists the folders in


def test_it_refuses_an_image_found_twice_as_different_files(tmp_path):
    # two photos under one id: which one was scored would depend on the disk's directory order
    root = make_dataset(tmp_path, per_class=2, seed=17, size=(40, 30))
    photo = sorted((root / "images").iterdir())[0]
    other = root / "HAM10000_images_part_1" / photo.name
    other.parent.mkdir()
    other.write_bytes(photo.read_bytes() + b"\0" * 10)
    with pytest.raises(DatasetError) as refused:
        data_mod.load_records(root)
    message = str(refused.value)
    assert f"image id {photo.stem} is found twice, as different files" in message
    assert str(photo) in message and str(other) in message
