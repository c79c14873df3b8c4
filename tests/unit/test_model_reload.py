"""A new model or card reaches a running worker: the classifier is loaded again when its files
change, a pair copied in half-way holds the photos back (retried) instead of failing them, and a
recalibrated card's version names its calibration. The tiny model trained on the fly only."""

import json
import os
import shutil
import threading
from unittest import mock

import keras
import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

import ml.inference
from diagnoses import services, tasks
from diagnoses.models import Diagnosis
from ml import CARD_FILENAME, MODEL_FILENAME
from ml.artifact import read_card, save_card, sha256_file
from ml.calibration import calibration_hash, recalibrate
from ml.errors import ModelArtifactError
from ml.inference import get_classifier


def upload(data, name="mole.jpg"):
    return SimpleUploadedFile(name, data, content_type="image/jpeg")


@pytest.fixture
def model_folder(tiny_model_dir, tmp_path):
    """A copy of the tiny model, as the folder a worker loads from and an operator replaces."""
    folder = tmp_path / "artifacts"
    shutil.copytree(tiny_model_dir, folder)
    return folder


def recalibrated_by_hand(folder, *, version, medium, high) -> dict:
    """The card as a recalibration leaves it: written atomically, other thresholds and version."""
    card = json.loads((folder / CARD_FILENAME).read_text())
    card.update(version=version, thresholds={"medium": medium, "high": high})
    save_card(card, folder)
    return card


def another_model_file(folder, tmp_path):
    """A valid model file with other weights than folder's: (its path, a card that names it)."""
    network = keras.saving.load_model(folder / MODEL_FILENAME, compile=False)
    last = network.layers[-1]
    last.set_weights([w + 0.5 for w in last.get_weights()])
    path = tmp_path / "new-model.keras"
    network.save(path)
    card = json.loads((folder / CARD_FILENAME).read_text())
    card.update(version="copied-in-2", model_sha256=sha256_file(path))
    return path, card


def copy_in(source, target):
    """cp to a temporary name, then rename into place, as an operator's tools (or rsync) do."""
    part = target.with_name(target.name + ".copying")
    shutil.copyfile(source, part)
    os.replace(part, target)


# --- the worker notices a new card or model ---------------------------------------------------

def test_it_takes_up_a_recalibrated_card_without_a_restart(model_folder):
    before = get_classifier(model_folder)
    assert get_classifier(model_folder) is before  # nothing changed: nothing loaded again

    recalibrated_by_hand(model_folder, version="recalibrated-1", medium=0.0, high=0.0)
    after = get_classifier(model_folder)

    assert after is not before
    assert after.version == "recalibrated-1" and after.thresholds == {"medium": 0.0, "high": 0.0}
    assert get_classifier(model_folder) is after


def test_a_change_is_loaded_once_by_threads_asking_at_the_same_time(model_folder, monkeypatch):
    get_classifier(model_folder)
    recalibrated_by_hand(model_folder, version="recalibrated-1", medium=0.1, high=0.5)
    loads = []
    real_load = ml.inference.load_classifier

    def counted_load(model_dir):
        loads.append(model_dir)
        return real_load(model_dir)

    monkeypatch.setattr(ml.inference, "load_classifier", counted_load)
    got, start = [], threading.Barrier(4)

    def ask():
        start.wait()
        got.append(get_classifier(model_folder))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(loads) == 1 and len({id(c) for c in got}) == 1
    assert got[0].version == "recalibrated-1"


def test_it_refuses_a_pair_copied_in_half_way_rather_than_keep_the_old_model(model_folder,
                                                                           tmp_path):
    old = get_classifier(model_folder)
    new_model, new_card = another_model_file(model_folder, tmp_path)

    copy_in(new_model, model_folder / MODEL_FILENAME)  # the model first, its card not yet
    for _ in range(2):  # not once: the old model, whose card is gone, is not kept for later
        with pytest.raises(ModelArtifactError, match="does not belong to its card"):
            get_classifier(model_folder)

    save_card(new_card, model_folder)  # the copy completed
    now = get_classifier(model_folder)
    assert now is not old and now.version == "copied-in-2"


# --- the photos wait while the model cannot be loaded ----------------------------------------

@pytest.mark.django_db
def test_a_photo_waits_for_a_pair_copied_in_half_way_then_gets_the_new_model(
        owner, jpeg_bytes, model_folder, settings, tmp_path, caplog):
    settings.ML_MODEL_DIR = model_folder
    first = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    assert services.diagnosis_classify(diagnosis_id=first.pk).model_version != "copied-in-2"
    new_model, new_card = another_model_file(model_folder, tmp_path)
    copy_in(new_model, model_folder / MODEL_FILENAME)
    photo = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))

    with pytest.raises(services.ModelUnavailable):
        services.diagnosis_classify(diagnosis_id=photo.pk)

    photo.refresh_from_db()
    assert (photo.status, photo.error, photo.attempts) == (Diagnosis.Status.QUEUED, "", 0)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(str(photo.pk) in e and "does not belong to its card" in e for e in errors)

    save_card(new_card, model_folder)
    done = services.diagnosis_classify(diagnosis_id=photo.pk)
    assert done.status == Diagnosis.Status.DONE and done.model_version == "copied-in-2"


@pytest.mark.django_db
def test_a_rerun_after_a_recalibration_is_stamped_and_banded_by_the_new_card(
        owner, jpeg_bytes, model_folder, settings):
    settings.ML_MODEL_DIR = model_folder
    photo = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    services.diagnosis_classify(diagnosis_id=photo.pk)
    recalibrated_by_hand(model_folder, version="recalibrated-1", medium=0.0, high=0.0)
    photo.refresh_from_db()
    assert services.diagnosis_requeue(diagnosis=photo)

    again = services.diagnosis_classify(diagnosis_id=photo.pk)

    assert (again.model_version, again.risk) == ("recalibrated-1", "high")


@pytest.fixture
def broken_model(tiny_model_dir, tmp_path, settings):
    """A model folder whose model file is not the one its card names."""
    folder = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, folder)
    data = bytearray((folder / MODEL_FILENAME).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / MODEL_FILENAME).write_bytes(bytes(data))
    settings.ML_MODEL_DIR = folder
    return folder


@pytest.mark.django_db
def test_its_task_retries_for_half_an_hour_then_fails_the_photo_as_unavailable(
        owner, jpeg_bytes, broken_model, caplog):
    photo = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    task = tasks.classify_diagnosis
    with mock.patch.object(task, "retry", wraps=task.retry) as retry:
        task.apply(args=[str(photo.pk)])  # apply() runs the retries at once

    waits = [call.kwargs["countdown"] for call in retry.call_args_list]
    assert len(waits) == task.max_retries and sum(waits) >= 30 * 60
    assert waits == sorted(waits)  # backing off
    photo.refresh_from_db()
    assert photo.status == Diagnosis.Status.FAILED
    assert photo.error == services.MESSAGE_MODEL_UNAVAILABLE
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert sum("is unusable" in e and str(photo.pk) in e for e in errors) == task.max_retries + 1
    assert any("gave up" in e for e in errors)


@pytest.mark.django_db
def test_its_task_classifies_the_photo_once_the_operator_mends_the_model(
        owner, jpeg_bytes, broken_model, tiny_model_dir):
    photo = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    task = tasks.classify_diagnosis
    real_retry = task.retry

    def mended_meanwhile(*args, **kwargs):
        shutil.copyfile(tiny_model_dir / MODEL_FILENAME, broken_model / MODEL_FILENAME)
        return real_retry(*args, **kwargs)

    with mock.patch.object(task, "retry", side_effect=mended_meanwhile):
        task.apply(args=[str(photo.pk)])

    photo.refresh_from_db()
    assert photo.status == Diagnosis.Status.DONE
    assert photo.model_version == read_card(tiny_model_dir)["version"]


# --- a recalibrated card's version names its calibration ------------------------------------

def test_the_calibration_hash_follows_every_calibration_field(tiny_model_dir):
    card = read_card(tiny_model_dir)
    base = calibration_hash(card)
    assert calibration_hash(json.loads(json.dumps(card))) == base  # as stored, as read back
    assert calibration_hash({**card, "validation": {}, "version": "x"}) == base
    changes = {"temperature": card["temperature"] + 1e-6,
               "thresholds": {**card["thresholds"], "high": card["thresholds"]["high"] + 1e-4},
               "logit_offset": {**card.get("logit_offset", {}), "nv": 0.123},
               "decision": {**card.get("decision", {}), "tau": 0.35}}
    for key, value in changes.items():
        assert calibration_hash({**card, key: value}) != base, key


def darkened_copy(data_dir, out_dir):
    """The same photos, darker: other data to calibrate on, under the same image ids."""
    shutil.copytree(data_dir, out_dir)
    for path in out_dir.rglob("*.jpg"):
        pixels = np.asarray(Image.open(path).convert("RGB"), np.float32) * 0.55
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
    return out_dir


def test_a_card_put_back_and_recalibrated_on_other_photos_gets_another_version(
        model_folder, tiny_model_dir, tmp_path):
    data_dir = tiny_model_dir.parent / "data"  # where tests/conftest.py made the training data
    shipped = (model_folder / CARD_FILENAME).read_bytes()

    first = recalibrate(data_dir=data_dir, model_dir=model_folder)
    (model_folder / CARD_FILENAME).write_bytes(shipped)  # git checkout ml/artifacts
    second = recalibrate(data_dir=darkened_copy(data_dir, tmp_path / "other"),
                         model_dir=model_folder)

    assert first["temperature"] != second["temperature"]  # another calibration indeed
    assert first["version"] != second["version"]
    for card in (first, second):
        stored_hash = calibration_hash(card)
        assert card["version"].endswith(f"-c{stored_hash}")
    assert read_card(model_folder)["version"] == second["version"]


def test_a_link_pointed_at_a_new_folder_replaces_the_model_loaded_through_it(model_folder, tmp_path):
    """Deployments swap a symbolic link to change card and model at once: the classifier loaded
    through the link is replaced, not kept beside the new one for the life of the worker."""
    newer = tmp_path / "artifacts-2"
    shutil.copytree(model_folder, newer)
    recalibrated_by_hand(newer, version="linked-2", medium=0.2, high=0.6)
    link = tmp_path / "current"
    link.symlink_to(model_folder)
    cached_before = len(ml.inference._cache)

    assert get_classifier(link).card["version"] != "linked-2"
    swap = tmp_path / "current.new"
    swap.symlink_to(newer)
    os.replace(swap, link)

    assert get_classifier(link).card["version"] == "linked-2"
    assert len(ml.inference._cache) == cached_before + 1
