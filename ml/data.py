"""HAM10000 on disk: metadata, image lookup, the lesion-disjoint split, decoding into RAM."""

import csv
import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import CLASSES
from .errors import DatasetError, ImageError
from .preprocessing import preprocess

METADATA_FILENAME = "HAM10000_metadata.csv"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
REQUIRED_COLUMNS = ("lesion_id", "image_id", "dx")


@dataclass(frozen=True)
class Record:
    image_id: str
    lesion_id: str
    dx: str
    path: Path

    @property
    def label(self) -> int:
        return CLASSES.index(self.dx)


def find_images(data_dir: Path) -> dict[str, Path]:
    """image_id -> path for every image below data_dir (any layout, any depth). An id found
    twice (the Kaggle download repeats its folders) is the sorted-first path when both files
    have the same size, whatever order the disk lists them in; a DatasetError naming both when
    they differ, as they are then different photos and either one could be scored."""
    found = {}
    for dirpath, _dirnames, filenames in os.walk(data_dir, followlinks=True):
        for name in filenames:
            stem, suffix = os.path.splitext(name)
            if suffix.lower() in IMAGE_SUFFIXES:
                path = Path(dirpath) / name
                found[stem] = _one_of(found[stem], path) if stem in found else path
    return found


def _one_of(first: Path, second: Path) -> Path:
    """Of two files of one image id, the sorted-first when their sizes match."""
    first, second = sorted((first, second), key=str)
    sizes = first.stat().st_size, second.stat().st_size
    if sizes[0] != sizes[1]:
        raise DatasetError(f"image id {first.stem} is found twice, as different files: {first} "
                           f"({sizes[0]:,} bytes) and {second} ({sizes[1]:,} bytes); keep one")
    return first


def load_records(data_dir) -> list[Record]:
    """Records of a HAM10000 folder, sorted by image_id; raises DatasetError when unusable."""
    data_dir = Path(data_dir)
    csv_path = data_dir / METADATA_FILENAME
    if not data_dir.is_dir():
        raise DatasetError(f"data folder not found: {data_dir}")
    if not csv_path.is_file():
        raise DatasetError(f"{METADATA_FILENAME} not found in {data_dir}")
    columns, numbered = _read_metadata(csv_path)
    if not numbered:
        raise DatasetError(f"{csv_path} has no rows")
    missing_cols = set(REQUIRED_COLUMNS) - set(columns)
    if missing_cols:
        raise DatasetError(f"{csv_path} lacks column(s): {', '.join(sorted(missing_cols))}")
    _check_rows(csv_path, numbered)
    rows = [row for _line, row in numbered]
    unknown = sorted({r["dx"] for r in rows} - set(CLASSES))
    if unknown:
        raise DatasetError(f"{csv_path} has unknown label(s) {unknown}; expected {list(CLASSES)}")
    images = find_images(data_dir)
    missing = [r["image_id"] for r in rows if r["image_id"] not in images]
    if missing:
        raise DatasetError(
            f"{len(missing)} image(s) listed in {METADATA_FILENAME} not found below {data_dir} "
            f"(first: {missing[:3]}); expected images/ or HAM10000_images_part_1/ and _part_2/"
        )
    records = [Record(r["image_id"], r["lesion_id"], r["dx"], images[r["image_id"]]) for r in rows]
    return sorted(records, key=lambda r: r.image_id)


def _read_metadata(csv_path) -> tuple[list, list[tuple[int, dict]]]:
    """(column names, [(line number, row)]) of the metadata CSV. utf-8-sig: Excel's "CSV UTF-8"
    starts the file with a byte-order mark, which plain utf-8 would glue to the first column's
    name. The line number is the one a text editor shows (the header is line 1)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            numbered = [(reader.line_num, row) for row in reader]
            return reader.fieldnames or [], numbered
    except UnicodeDecodeError:
        raise DatasetError(f"{csv_path} is not UTF-8 text; save it as UTF-8 "
                           "(in Excel: CSV UTF-8)") from None
    except csv.Error as exc:
        raise DatasetError(f"{csv_path} is not a readable CSV file: {exc}") from None


def _check_rows(csv_path, numbered) -> None:
    """Every row names its lesion, image and diagnosis, and no image is listed twice (under two
    lesion_ids it could land on both sides of the split)."""
    first_line = {}
    for line, row in numbered:
        empty = [c for c in REQUIRED_COLUMNS if not (row.get(c) or "").strip()]
        if empty:
            raise DatasetError(f"{csv_path} line {line}: empty or missing {', '.join(empty)}")
        if row["image_id"] in first_line:
            raise DatasetError(f"{csv_path} line {line}: image_id {row['image_id']} is listed "
                               f"again (first on line {first_line[row['image_id']]})")
        first_line[row["image_id"]] = line


def ids_sha256(image_ids) -> str:
    return hashlib.sha256("\n".join(sorted(image_ids)).encode()).hexdigest()


def split_by_lesion(records, *, val_fraction=0.18, seed=0):
    """(train, val): lesion-disjoint, stratified by diagnosis, deterministic for a seed.

    Every lesion goes wholly to one side. Within each diagnosis the lesions are shuffled with
    the seed and the first round(val_fraction * n_lesions) go to validation (at least one when
    the class has two or more lesions).
    """
    lesion_dx = {}
    for r in records:
        lesion_dx.setdefault(r.lesion_id, r.dx)  # HAM10000 lesions have one dx
    rng = np.random.default_rng(seed)
    val_lesions = set()
    for dx in CLASSES:
        lesions = sorted(lid for lid, d in lesion_dx.items() if d == dx)
        if len(lesions) < 2:
            continue
        order = rng.permutation(len(lesions))
        n_val = min(len(lesions) - 1, max(1, round(val_fraction * len(lesions))))
        val_lesions.update(lesions[i] for i in order[:n_val])
    train = [r for r in records if r.lesion_id not in val_lesions]
    val = [r for r in records if r.lesion_id in val_lesions]
    return train, val


def split_info(train, val, *, seed, val_fraction) -> dict:
    return {
        "method": "lesion-disjoint, stratified by dx",
        "seed": seed,
        "val_fraction": val_fraction,
        "n_train_images": len(train),
        "n_val_images": len(val),
        "n_train_lesions": len({r.lesion_id for r in train}),
        "n_val_lesions": len({r.lesion_id for r in val}),
        "train_counts": {c: sum(r.dx == c for r in train) for c in CLASSES},
        "val_counts": {c: sum(r.dx == c for r in val) for c in CLASSES},
        "train_image_ids_sha256": ids_sha256(r.image_id for r in train),
        "val_image_ids_sha256": ids_sha256(r.image_id for r in val),
        # The ids themselves, so that `evaluate` can find the validation images in any folder
        # that holds them (the full HAM10000 too) and tell which scored images trained the model.
        "train_image_ids": sorted(r.image_id for r in train),
        "val_image_ids": sorted(r.image_id for r in val),
    }


def decode_all(records, size, *, workers=None) -> np.ndarray:
    """uint8 array (n, height, width, 3) of the records' images, decoded once."""
    width, height = size
    out = np.empty((len(records), height, width, 3), dtype=np.uint8)

    def work(i):
        try:
            out[i] = preprocess(records[i].path, size)
        except ImageError as exc:
            raise DatasetError(f"cannot decode {records[i].path}: {exc}") from exc

    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
        list(pool.map(work, range(len(records))))
    return out


def labels(records) -> np.ndarray:
    return np.array([r.label for r in records], dtype=np.int64)
