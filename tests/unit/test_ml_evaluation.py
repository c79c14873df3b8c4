"""`python -m ml evaluate` / `compare` / `train` outputs: the card's split ids, --split val by id,
the count of (and warning about) training photos among those scored, strict JSON written
atomically. Uses the tiny model trained once per session (tests/conftest.py)."""

import csv
import json
import os
import shutil

import pytest

from ml import CARD_FILENAME, CLASSES, MALIGNANT
from ml import data as data_mod
from ml.errors import DatasetError
from ml.evaluation import evaluate
from ml.synthetic import make_dataset
from tests.unit.test_ml_pipeline import _run_cli


@pytest.fixture(scope="module")
def data_dir(tiny_model_dir):
    return tiny_model_dir.parent / "data"  # where tests/conftest.py made the training data


@pytest.fixture(scope="module")
def card(tiny_model_dir):
    return json.loads((tiny_model_dir / CARD_FILENAME).read_text())


@pytest.fixture(scope="module")
def held_out_dir(tmp_path_factory):
    """Synthetic lesions the tiny model never saw (another seed)."""
    return make_dataset(tmp_path_factory.mktemp("held-out"), per_class=4, seed=9, size=(60, 45))


@pytest.fixture(scope="module")
def larger_dir(data_dir, held_out_dir, tmp_path_factory):
    """The training folder and more photos, as the full HAM10000 holds the 8,561 and more: its
    lesion-disjoint split differs from the model's, but its validation images are all there."""
    root = tmp_path_factory.mktemp("larger") / "data"
    shutil.copytree(data_dir, root)
    shutil.copytree(held_out_dir / "images", root / "more-images")
    rows = _read_rows(data_dir) + _read_rows(held_out_dir)
    _write_rows(root, rows)
    return root


def _read_rows(root):
    with open(root / data_mod.METADATA_FILENAME, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_rows(root, rows):
    with open(root / data_mod.METADATA_FILENAME, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _strict_json(text):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_the_card_lists_the_image_ids_of_its_split(card, data_dir):
    split = card["data_split"]
    train_ids, val_ids = split["train_image_ids"], split["val_image_ids"]
    assert train_ids == sorted(train_ids) and val_ids == sorted(val_ids)
    assert (len(train_ids), len(val_ids)) == (split["n_train_images"], split["n_val_images"])
    assert set(train_ids) | set(val_ids) == {r.image_id for r in data_mod.load_records(data_dir)}
    assert data_mod.ids_sha256(train_ids) == split["train_image_ids_sha256"]
    assert data_mod.ids_sha256(val_ids) == split["val_image_ids_sha256"]


def test_it_finds_the_validation_images_by_id_in_a_larger_folder(tiny_model_dir, card, data_dir, larger_dir):
    split = card["data_split"]
    # the larger folder's own split is another one: a hash of it could not find the model's
    records = data_mod.load_records(larger_dir)
    _, other = data_mod.split_by_lesion(records, val_fraction=split["val_fraction"], seed=split["seed"])
    assert data_mod.ids_sha256(r.image_id for r in other) != split["val_image_ids_sha256"]

    result = evaluate(data_dir=larger_dir, model_dir=tiny_model_dir, split="val")

    assert result["n_images"] == split["n_val_images"] and result["n_training_images"] == 0
    on_own_folder = evaluate(data_dir=data_dir, model_dir=tiny_model_dir, split="val")
    for key in ("accuracy", "balanced_accuracy", "malignant_auc", "intervals"):
        assert result[key] == on_own_folder[key], key


def test_it_says_which_validation_images_a_folder_lacks(tiny_model_dir, card, data_dir, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(data_dir, root)
    gone = card["data_split"]["val_image_ids"][0]
    _write_rows(root, [row for row in _read_rows(data_dir) if row["image_id"] != gone])
    with pytest.raises(DatasetError) as refused:
        evaluate(data_dir=root, model_dir=tiny_model_dir, split="val")
    message = str(refused.value)
    n_val = card["data_split"]["n_val_images"]
    assert f"lacks 1 of the {n_val} images of the model's validation split" in message and gone in message
    # not "use --split all": on this folder that would score the training photos
    assert "--split val on the folder the model trained on" in message


def test_an_older_card_without_ids_falls_back_to_the_hash(tiny_model_dir, card, data_dir, larger_dir, tmp_path):
    old = tmp_path / "old-model"
    shutil.copytree(tiny_model_dir, old)
    older = json.loads(json.dumps(card))
    del older["data_split"]["train_image_ids"], older["data_split"]["val_image_ids"]
    (old / CARD_FILENAME).write_text(json.dumps(older))

    result = evaluate(data_dir=data_dir, model_dir=old, split="val")

    assert result["n_images"] == card["data_split"]["n_val_images"]
    assert result["n_training_images"] is None  # unknown: the card does not list them
    with pytest.raises(DatasetError, match="lists no image ids to find them by; run --split val on the folder"):
        evaluate(data_dir=larger_dir, model_dir=old, split="val")


def test_it_counts_and_warns_of_training_photos_among_those_scored(tiny_model_dir, card, data_dir, held_out_dir,
                                                                   tmp_path, capsys):
    out = tmp_path / "eval.json"
    done = _run_cli(capsys, "evaluate", "--data", data_dir, "--model", tiny_model_dir, "--json", out)
    assert done.returncode == 0, done.stderr
    n_train = card["data_split"]["n_train_images"]
    assert json.loads(out.read_text())["n_training_images"] == n_train
    assert json.loads(done.stdout)["n_training_images"] == n_train
    assert (f"warning: the model trained on {n_train} of the {n_train + card['data_split']['n_val_images']} "
            "images scored") in done.stderr and "--split val" in done.stderr

    for args in (["--data", held_out_dir], ["--data", data_dir, "--split", "val"]):
        done = _run_cli(capsys, "evaluate", *args, "--model", tiny_model_dir, "--json", out)
        assert done.returncode == 0, done.stderr
        assert json.loads(out.read_text())["n_training_images"] == 0 and "warning" not in done.stderr


def test_compare_counts_and_warns_of_each_models_training_photos(tiny_model_dir, card, data_dir, held_out_dir,
                                                                 tmp_path, capsys):
    twin = tmp_path / "twin"
    shutil.copytree(tiny_model_dir, twin)
    out = tmp_path / "compare.json"
    done = _run_cli(capsys, "compare", "--data", data_dir, "--a", tiny_model_dir, "--b", twin, "--json", out)
    assert done.returncode == 0, done.stderr
    n_train = card["data_split"]["n_train_images"]
    assert json.loads(out.read_text())["n_training_images"] == {"a": n_train, "b": n_train}
    assert "warning: model A trained on" in done.stderr and "warning: model B trained on" in done.stderr

    done = _run_cli(capsys, "compare", "--data", held_out_dir, "--a", tiny_model_dir, "--b", twin, "--json", out)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["n_training_images"] == {"a": 0, "b": 0} and "warning" not in done.stderr


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_a_failed_write_leaves_the_previous_result_whole(tiny_model_dir, held_out_dir, tmp_path, capsys,
                                                         monkeypatch, command):
    out = tmp_path / "result.json"
    out.write_text('{"previous": true}\n')
    models = _models(command, tiny_model_dir, tiny_model_dir)

    done = _run_cli(capsys, command, "--data", held_out_dir, *models, "--json", "/dev/full")
    assert done.returncode == 1
    assert done.stderr.strip() == "error: cannot write JSON to /dev/full: No space left on device"

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    done = _run_cli(capsys, command, "--data", held_out_dir, *models, "--json", out)
    assert done.returncode == 1  # an error line, not a traceback after all the scoring
    assert done.stderr.strip() == f"error: cannot write JSON to {out}: No space left on device"
    assert out.read_text() == '{"previous": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]  # no half file left


def _models(command, model_a, model_b):
    return ["--model", model_a] if command == "evaluate" else ["--a", model_a, "--b", model_b]


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_an_unwritable_json_target_is_refused_before_any_scoring(tmp_path, capsys, command):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    missing = tmp_path / "no-model"  # loading it first would be exit status 2, "model card not found"
    for target, reason in ((a_file / "result.json", "Not a directory"), (tmp_path, "Is a directory")):
        done = _run_cli(capsys, command, "--data", tmp_path / "no-data", *_models(command, missing, missing),
                        "--json", target)
        assert done.returncode == 1
        assert done.stderr.strip() == f"error: cannot write JSON to {target}: {reason}"


@pytest.mark.parametrize("command", ["evaluate", "compare"])
def test_json_dash_writes_the_result_to_standard_output(tiny_model_dir, held_out_dir, tmp_path, capsys,
                                                        monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    done = _run_cli(capsys, command, "--data", held_out_dir, *_models(command, tiny_model_dir, tiny_model_dir),
                    "--json", "-")
    assert done.returncode == 0, done.stderr
    result = _strict_json(done.stdout)  # the JSON alone: the summary went to stderr
    assert result["n_images"] == 4 * len(CLASSES) and result["split"] == "all"
    assert ("balanced_accuracy" if command == "evaluate" else "B better in") in done.stderr
    assert not (tmp_path / "-").exists()


def test_a_descriptors_name_is_written_through_that_descriptor(tmp_path):
    """--json /dev/fd/3 3>f, or /dev/stdout > f: the shell's file, after what it already holds
    (opening the name again would start at offset 0; a .part beside it cannot be made)."""
    from ml.artifact import write_json

    path = tmp_path / "shell.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, b"before\n")
        write_json(f"/dev/fd/{fd}", {"a": 1})
        os.write(fd, b"after\n")
    finally:
        os.close(fd)
    assert path.read_text() == 'before\n{\n  "a": 1\n}\nafter\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shell.json"]


def test_a_symlink_to_a_file_stays_a_link_and_its_target_is_replaced(tmp_path):
    from ml.artifact import write_json

    target = tmp_path / "runs" / "result.json"
    target.parent.mkdir()
    target.write_text("{}\n")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    write_json(link, {"a": 1})
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]  # no .part left


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm on this machine")
def test_a_regular_file_on_the_memory_disk_is_replaced_whole():
    """/dev/shm holds files like any disk: a reader must not meet half of one there either."""
    import tempfile

    from ml.artifact import write_json

    fd, name = tempfile.mkstemp(suffix=".json", dir="/dev/shm")
    os.close(fd)
    try:
        before = os.stat(name).st_ino
        write_json(name, {"a": 1})
        assert json.loads(open(name).read()) == {"a": 1}
        assert os.stat(name).st_ino != before  # renamed over, not written in place
        assert not os.path.exists(name + ".part")
    finally:
        os.unlink(name)


def test_a_device_is_written_to_not_replaced(tmp_path, monkeypatch):
    """--json /dev/stdout: written straight to, as there is no file to rename over."""
    from ml.artifact import write_json

    device = tmp_path / "device"
    os.mkfifo(device)
    reader = os.open(device, os.O_RDONLY | os.O_NONBLOCK)  # a pipe opens for writing once read
    try:
        write_json(device, {"a": 1})
        assert json.loads(os.read(reader, 1000)) == {"a": 1}
    finally:
        os.close(reader)
    assert not device.is_file() and not (tmp_path / "device.part").exists()


def test_train_writes_null_not_nan_in_the_card_and_the_summary(tmp_path, capsys):
    # no malignant lesion in validation (none at all here): the malignant AUC is undefined
    root = make_dataset(tmp_path / "data", per_class=4, seed=21, size=(60, 45))
    _write_rows(root, [row for row in _read_rows(root) if row["dx"] not in MALIGNANT])
    out = tmp_path / "model"
    done = _run_cli(capsys, "train", "--data", root, "--out", out, "--preset", "tiny", "--epochs", "1")
    assert done.returncode == 0, done.stderr

    summary = _strict_json(done.stdout)
    written = _strict_json((out / CARD_FILENAME).read_text())

    assert summary["malignant_auc"] is None and written["validation"]["malignant_auc"] is None
    assert written["classes"] == list(CLASSES)
    assert sorted(os.listdir(out)) == ["model.keras", "model_card.json"]  # the write probe is gone


def test_train_refuses_an_out_folder_it_cannot_write_before_training(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    out = a_file / "model"
    # no data either: checked first, the folder would stop it with "data folder not found"
    done = _run_cli(capsys, "train", "--data", tmp_path / "no-data", "--out", out, "--preset", "tiny")
    assert done.returncode == 1
    assert done.stderr.strip() == f"error: cannot write the model to {out}: Not a directory"


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_job_that_fails_leaves_no_empty_output_folder(tmp_path, capsys, command):
    out = tmp_path / "runs" / "new"
    target = ["--out", out, "--preset", "tiny"] if command == "train" else ["--json", out / "r.json"]
    done = _run_cli(capsys, command, "--data", tmp_path / "no-data", *target)
    assert done.returncode == 1 and "error:" in done.stderr
    assert list(tmp_path.iterdir()) == []  # checked writable, but not made: nothing was written


def test_json_is_written_into_a_folder_it_makes(tmp_path):
    from ml.artifact import write_json

    write_json(tmp_path / "runs" / "new" / "r.json", {"a": 1})
    assert json.loads((tmp_path / "runs" / "new" / "r.json").read_text()) == {"a": 1}


def test_an_os_error_is_an_error_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    from ml.__main__ import COMMANDS

    card = tmp_path / CARD_FILENAME

    def read_only_disk(args):
        raise OSError(30, "Read-only file system", str(card))

    monkeypatch.setitem(COMMANDS, "recalibrate", read_only_disk)
    done = _run_cli(capsys, "recalibrate", "--data", tmp_path, "--model", tmp_path)
    assert done.returncode == 1
    assert done.stderr == f"error: [Errno 30] Read-only file system: '{card}'\n"


def _photo_checks_bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "bench_photo_checks.py"
    spec = importlib.util.spec_from_file_location("bench_photo_checks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_photo_checks_bench_names_the_folder_it_needs_without_a_traceback(tiny_model_dir, held_out_dir,
                                                                             tmp_path, capsys):
    bench = _photo_checks_bench()
    assert bench.main(["--data", str(held_out_dir), "--model", str(tiny_model_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: this folder lacks") and "--split" not in err  # the bench has no --split
    assert "give --data a HAM10000 folder that holds the model's validation photos" in err
    assert bench.main(["--data", str(tmp_path / "none"), "--model", str(tiny_model_dir)]) == 1
    assert capsys.readouterr().err == f"error: data folder not found: {tmp_path / 'none'}\n"
