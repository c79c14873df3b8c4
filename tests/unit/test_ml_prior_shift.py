"""The prior-shift offset: trained with class weights and a nevus cap, the network's softmax
follows the weighted epoch's class mix; the card's logit_offset turns it back to the training
split's class frequencies. Its arithmetic, what it does to held-out probabilities, inference,
older cards without it, and `python -m ml recalibrate`. Synthetic data and the tiny model only."""

import json
import shutil

import numpy as np
import pytest

from ml import CARD_FILENAME, CLASSES, MODEL_FILENAME
from ml import metrics as M
from ml.artifact import read_card, sha256_file
from ml.calibration import (OFFSET_RULE, calibrate, calibration_hash, offset_from_card,
                            prior_offset)
from ml.inference import load_classifier
from ml.preprocessing import preprocess
from ml.synthetic import draw_lesion, make_dataset
from tests.unit.test_ml_pipeline import _run_cli

# The shipped model's split and epoch (its card): 4,703 nevi of 7,018 photos, 3,000 an epoch.
TRAIN_COUNTS = [225, 359, 777, 81, 777, 4703, 96]
IMAGES_PER_EPOCH = [225, 359, 777, 81, 777, 3000, 96]
CLASS_WEIGHTS = [2.1703, 1.7181, 1.1679, 3.6171, 1.1679, 0.5944, 3.3225]


def _card(train_counts, images_per_epoch, class_weights) -> dict:
    """The part of a card that calibrate reads."""
    return {"data_split": {"train_counts": dict(zip(CLASSES, train_counts))},
            "training": {"images_per_epoch": dict(zip(CLASSES, images_per_epoch)),
                         "class_weights": dict(zip(CLASSES, class_weights))}}


def _vector(mapping) -> np.ndarray:
    return np.array([mapping[c] for c in CLASSES])


def test_the_offset_is_the_log_ratio_of_the_training_prior_to_the_weighted_epoch_mix():
    # Five classes of 100 photos, 300 nevi capped at 200 an epoch, 200 vascular lesions; the
    # first five weighted 2, so every class weighs 200 in an epoch: q is uniform, 1/7 each.
    counts, epoch, weights = [100] * 5 + [300, 200], [100] * 5 + [200, 200], [2] * 5 + [1, 1]
    expected = np.log([0.7] * 5 + [2.1, 1.4])  # log(p / (1/7)), p = counts / 1000

    assert prior_offset(counts, epoch, weights) == pytest.approx(expected, abs=1e-12)
    assert offset_from_card(_card(counts, epoch, weights)) == pytest.approx(expected, abs=1e-12)
    # a class training lacks (no photo, no weight) gets no offset
    absent = prior_offset([0, 100, 100, 100, 100, 100, 100], [0] + [100] * 6, [0] + [1] * 6)
    assert absent == pytest.approx(np.zeros(len(CLASSES)), abs=1e-12)


def _posterior_logits(n, seed, prior, mix):
    """(logits, labels) of n photos drawn with class frequencies prior, the logits being the
    exact posterior log-odds under the class mix mix: what a network trained on mix learns."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(CLASSES), n, p=prior)
    means = 1.5 * np.eye(len(CLASSES))
    x = means[y] + rng.normal(0.0, 1.0, (n, len(CLASSES)))
    log_likelihood = -0.5 * ((x[:, None, :] - means[None]) ** 2).sum(axis=-1)
    return log_likelihood + np.log(mix), y


def _held_out_probabilities(card, val, test):
    """Calibrate on val, as training does, and give the probabilities of the test photos."""
    (val_logits, val_y), (test_logits, _) = val, test
    fields = calibrate(val_logits, val_y, np.arange(len(val_y)), card)
    return M.softmax(test_logits, fields["temperature"], _vector(fields["logit_offset"])), fields


def test_the_offset_brings_held_out_probabilities_to_the_class_frequencies():
    prior = np.array(TRAIN_COUNTS) / sum(TRAIN_COUNTS)
    weighted = np.array(IMAGES_PER_EPOCH) * np.array(CLASS_WEIGHTS)
    mix = weighted / weighted.sum()
    val, test = _posterior_logits(4000, 1, prior, mix), _posterior_logits(4000, 2, prior, mix)
    frequencies = np.bincount(test[1], minlength=len(CLASSES)) / len(test[1])

    shipped_like = _card(TRAIN_COUNTS, IMAGES_PER_EPOCH, CLASS_WEIGHTS)
    corrected, fields = _held_out_probabilities(shipped_like, val, test)
    # a card whose epoch mix is the training prior: no offset, the temperature alone
    unweighted = _card(TRAIN_COUNTS, TRAIN_COUNTS, [1] * len(CLASSES))
    plain, plain_fields = _held_out_probabilities(unweighted, val, test)

    assert _vector(fields["logit_offset"]) == pytest.approx(np.log(prior / mix), abs=1e-6)
    assert _vector(plain_fields["logit_offset"]) == pytest.approx(np.zeros(len(CLASSES)), abs=1e-6)
    assert fields["logit_offset_rule"] == OFFSET_RULE
    assert fields["temperature"] == pytest.approx(1.0, abs=0.1)  # nothing left for it to undo
    assert M.nll(corrected, test[1]) < M.nll(plain, test[1]) - 0.02
    assert np.abs(corrected.mean(axis=0) - frequencies).max() < 0.025
    assert np.abs(plain.mean(axis=0) - frequencies).max() > 0.1  # what the temperature cannot do
    assert fields["validation"]["nll_after"] < plain_fields["validation"]["nll_after"]


def test_training_stores_the_offset_its_card_implies(tiny_model_dir):
    card = json.loads((tiny_model_dir / CARD_FILENAME).read_text())
    assert list(card["logit_offset"]) == list(CLASSES)
    assert _vector(card["logit_offset"]) == pytest.approx(offset_from_card(card), abs=1e-6)
    assert card["logit_offset_rule"] == OFFSET_RULE


def _card_with(folder, **changes):
    card = json.loads((folder / CARD_FILENAME).read_text())
    for key, value in changes.items():
        if value is None:
            card.pop(key, None)
        else:
            card[key] = value
    (folder / CARD_FILENAME).write_text(json.dumps(card))
    return card


def _by_hand(model_dir, images, offset):
    """softmax((logits + offset) / T), the logits from the stored network and the card's
    test-time flips, computed here without ml.inference."""
    import keras

    card = json.loads((model_dir / CARD_FILENAME).read_text())
    size = (card["input_size"]["width"], card["input_size"]["height"])
    x = np.stack([preprocess(image, size) for image in images])
    views = [x, x[:, :, ::-1], x[:, ::-1], x[:, ::-1, ::-1]][:card["tta_views"]]
    network = keras.saving.load_model(model_dir / MODEL_FILENAME, compile=False)
    logits = np.mean([network(v.astype(np.float32), training=False).numpy() for v in views], axis=0)
    z = (logits.astype(np.float64) + offset) / card["temperature"]
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def images():
    return [draw_lesion(dx, seed=21 + i) for i, dx in enumerate(CLASSES)]


def test_inference_adds_the_offset_to_the_logits_before_the_temperature(tiny_model_dir, tmp_path,
                                                                         images):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    offset = np.array([0.5, -0.5, 0.0, 1.0, -1.0, 2.0, -1.5])
    _card_with(folder, logit_offset=dict(zip(CLASSES, offset.tolist())))

    predictions = load_classifier(folder).predict_batch(images)

    expected = _by_hand(folder, images, offset)
    got = np.array([[p.probabilities[c] for c in CLASSES] for p in predictions])
    assert got == pytest.approx(expected, abs=1e-5)
    assert np.abs(expected - _by_hand(folder, images, 0.0)).max() > 0.05  # the offset matters here


def test_a_card_without_the_offset_loads_and_predicts_as_before(tiny_model_dir, tmp_path, images):
    folder = tmp_path / "older"
    shutil.copytree(tiny_model_dir, folder)
    _card_with(folder, logit_offset=None, logit_offset_rule=None)

    predictions = load_classifier(folder).predict_batch(images)

    got = np.array([[p.probabilities[c] for c in CLASSES] for p in predictions])
    assert got == pytest.approx(_by_hand(folder, images, 0.0), abs=1e-5)


@pytest.fixture
def older_model(tiny_model_dir, tmp_path):
    """The tiny model with a card as the shipped one was before recalibration: older, and
    without the offset."""
    folder = tmp_path / "older"
    shutil.copytree(tiny_model_dir, folder)
    _card_with(folder, logit_offset=None, logit_offset_rule=None,
               version="2026.01.02-tiny-0a0b0c0d", created="2026-01-02T03:04:05+00:00")
    return folder


def test_recalibrate_refits_the_card_and_keeps_the_model(older_model, tiny_model_dir, capsys):
    from ml.artifact import model_version, timestamp
    from ml.evaluation import evaluate

    data_dir = tiny_model_dir.parent / "data"  # where tests/conftest.py made the training data
    before = json.loads((older_model / CARD_FILENAME).read_text())
    model_bytes = (older_model / MODEL_FILENAME).read_bytes()

    done = _run_cli(capsys, "recalibrate", "--data", data_dir, "--model", older_model)

    assert done.returncode == 0, done.stderr
    card = read_card(older_model)  # the shape check, and the model file still its own
    assert (older_model / MODEL_FILENAME).read_bytes() == model_bytes
    assert card["model_sha256"] == before["model_sha256"]
    assert sha256_file(older_model / MODEL_FILENAME) == card["model_sha256"]
    made_today = model_version(timestamp(), "tiny", before["model_sha256"])
    assert card["version"] == f"{made_today}-c{calibration_hash(card)}"
    assert card["version"] != before["version"] == card["recalibrated"]["previous_version"]
    assert json.loads(done.stdout)["version"] == card["version"]
    assert _vector(card["logit_offset"]) == pytest.approx(offset_from_card(card), abs=1e-6)
    for key in ("created", "data_split", "training", "limits", "licence", "model_size_bytes",
                "tta_views", "input_size"):
        assert card[key] == before[key], key
    assert not list(older_model.glob("*.part*"))
    # the site's figures on the validation photos are the card's
    result = evaluate(data_dir=data_dir, model_dir=older_model, split="val")
    for key in ("accuracy", "balanced_accuracy", "malignant_auc"):
        assert result[key] == pytest.approx(card["validation"][key], abs=1e-3), key
    assert result["intervals"] == card["validation"]["intervals"]


def test_recalibrating_on_the_day_the_card_was_made_still_gives_a_new_version(tiny_model_dir,
                                                                               tmp_path, capsys):
    """Results and reviews are told apart by version: a card refitted the day it was made (or
    twice a day to the same calibration) must not keep its version, or an old review would pass
    for a current one."""
    from ml.artifact import model_version, timestamp

    folder = tmp_path / "today"
    shutil.copytree(tiny_model_dir, folder)
    card = json.loads((folder / CARD_FILENAME).read_text())
    made_today = model_version(timestamp(), card["preset"], card["model_sha256"])
    _card_with(folder, version=made_today)
    data_dir = tiny_model_dir.parent / "data"
    versions = [made_today]
    for _ in range(2):
        assert _run_cli(capsys, "recalibrate", "--data", data_dir, "--model", folder).returncode == 0
        versions.append(read_card(folder)["version"])

    recalibrated = f"{versions[0]}-c{calibration_hash(read_card(folder))}"
    assert versions[1:] == [recalibrated, recalibrated + "-r2"]


def test_recalibrate_refuses_a_folder_without_the_validation_photos(older_model, tmp_path, capsys):
    elsewhere = make_dataset(tmp_path / "elsewhere", per_class=2, seed=7, size=(60, 45))
    card_bytes = (older_model / CARD_FILENAME).read_bytes()

    done = _run_cli(capsys, "recalibrate", "--data", elsewhere, "--model", older_model)

    assert done.returncode == 1
    assert "images of the model's validation split" in done.stderr
    assert "recalibrate with the folder the model trained on" in done.stderr
    assert (older_model / CARD_FILENAME).read_bytes() == card_bytes
