"""train -> save -> load -> predict -> explain -> evaluate on a tiny synthetic dataset.

The tiny model is trained once per session (the `tiny_model_dir` fixture in tests/conftest.py).
"""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml import CARD_FILENAME, CLASSES, FORMAT_VERSION, MALIGNANT, MODEL_FILENAME
from ml.errors import ImageError, ModelArtifactError
from ml.inference import Prediction, get_classifier, load_classifier
from ml.preprocessing import preprocess, to_rgb
from ml.metrics import TAU_GRID, decide
from ml.model import PRESETS
from ml.training import training_precision
from ml.synthetic import draw_lesion, make_dataset
from tests.unit.test_uploads import (avif_with_its_pixels_zeroed, exif_with_a_malformed_make,
                                     half_dark_photo, is_dark, sixteen_bit_grey_png)


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return load_classifier(tiny_model_dir)


@pytest.fixture(scope="module")
def held_out_dir(tmp_path_factory):
    """Synthetic lesions the tiny model never saw (another seed), in the Kaggle layout."""
    return make_dataset(tmp_path_factory.mktemp("held-out"), per_class=6, layout="kaggle", seed=9)


def _jpeg(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_it_writes_a_complete_card(tiny_model_dir):
    card = json.loads((tiny_model_dir / CARD_FILENAME).read_text())
    assert card["format_version"] == FORMAT_VERSION
    assert card["classes"] == list(CLASSES) and card["malignant_classes"] == list(MALIGNANT)
    assert 0 <= card["thresholds"]["medium"] <= card["thresholds"]["high"] <= 1
    assert card["temperature"] > 0
    split = card["data_split"]
    assert split["n_train_images"] + split["n_val_images"] == 12 * len(CLASSES)
    assert len(split["val_image_ids_sha256"]) == 64 and len(split["train_image_ids_sha256"]) == 64
    val = card["validation"]
    for key in ("accuracy", "balanced_accuracy", "malignant_auc", "per_class_recall", "ece_before",
                "ece_after", "nll_before", "nll_after", "at_thresholds", "roc_curve", "confusion_matrix"):
        assert key in val, key
    assert val["nll_after"] <= val["nll_before"] + 1e-6  # temperature fitted on this split
    for key in ("accuracy", "balanced_accuracy", "malignant_auc"):
        low, high = val["intervals"][key]
        assert low <= val[key] <= high, key
    assert card["training"]["hardware"]["device"] and card["training"]["hardware"]["cpu_count"]
    assert card["training"]["precision"] == training_precision(PRESETS["tiny"])
    assert card["training"]["config"]["label_smoothing"] == PRESETS["tiny"]["label_smoothing"] > 0
    assert card["decision"]["tau"] in TAU_GRID and list(card["decision"]["class_bias"]) == list(CLASSES)
    history = card["training"]["history"]
    assert [e["epoch"] for e in history if "raw_val_balanced_accuracy" in e] == [5, 10]
    assert "CC BY-NC-SA 4.0" in card["licence"] and "10.7910/DVN/DBW86T" in card["licence"]
    counts = split["val_counts"]
    assert f"have only {counts['df']} and {counts['vasc']} validation images" in card["limits"][-1]
    assert (tiny_model_dir / MODEL_FILENAME).stat().st_size == card["model_size_bytes"]
    assert not list(tiny_model_dir.glob("*.part*"))


@pytest.mark.parametrize("native_bf16, gpu, allowed, expected", [
    (True, None, True, "mixed_bfloat16"), (False, None, True, "float32"), (True, None, False, "float32"),
    (False, "NVIDIA H100 80GB HBM3", True, "mixed_bfloat16"), (False, "NVIDIA H100 80GB HBM3", False, "float32")])
def test_it_trains_in_bfloat16_only_where_the_hardware_runs_it_natively(monkeypatch, native_bf16, gpu, allowed,
                                                                        expected):
    from ml import training

    monkeypatch.setattr(training, "bf16_hardware", lambda: native_bf16)
    monkeypatch.setattr(training, "accelerator_name", lambda: gpu)
    assert training.training_precision({"mixed_precision": allowed}) == expected


def test_it_ships_a_float32_model_whatever_precision_trained_it(classifier):
    assert {layer.dtype_policy.name for layer in classifier.model.layers} == {"float32"}


def test_it_folds_batchnorm_into_the_convolutions_with_the_same_logits(tiny_model_dir, classifier):
    import keras

    from ml.model import CAM_LAYER, fold_batchnorm

    stored = keras.saving.load_model(tiny_model_dir / MODEL_FILENAME, compile=False)
    batchnorms = [layer for layer in stored.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batchnorms and any(np.abs(layer.get_weights()[2]).max() > 0.01 for layer in batchnorms)  # trained stats

    folded = fold_batchnorm(stored)

    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert folded.count_params() < stored.count_params()
    x = np.random.default_rng(3).integers(0, 256, (16, *stored.input_shape[1:]), dtype=np.uint8)
    assert np.allclose(folded(x, training=False), stored(x, training=False), atol=1e-4)
    assert folded.get_layer(CAM_LAYER)  # Grad-CAM finds its layer
    # The loaded classifier runs the folded network, and nothing folds twice.
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in classifier.model.layers)
    assert fold_batchnorm(folded) is None


def test_it_keeps_the_stored_network_when_folding_would_change_the_logits(tiny_model_dir, monkeypatch):
    import keras

    import ml.model
    from ml.inference import _inference_network

    stored = keras.saving.load_model(tiny_model_dir / MODEL_FILENAME, compile=False)
    real_fold = ml.model.fold_batchnorm

    def wrong_fold(model):
        folded = real_fold(model)
        folded.get_layer("logits").set_weights([w + 1.0 for w in folded.get_layer("logits").get_weights()])
        return folded

    monkeypatch.setattr(ml.model, "fold_batchnorm", wrong_fold)
    assert _inference_network(stored) is stored


def test_it_saves_no_optimizer_state_in_the_model_file(tmp_path):
    import zipfile

    import h5py
    import keras

    from ml.artifact import save_model_file
    from ml.model import build_model

    model = build_model(**PRESETS["tiny"])
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.random.default_rng(0).integers(0, 255, (8, 36, 48, 3)).astype("uint8"), np.arange(8) % 7
    model.fit(x, y, verbose=0)
    path = save_model_file(model, tmp_path)
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as weights:
        assert "optimizer" not in weights
    reloaded = keras.models.load_model(path, compile=False)
    assert np.allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_it_averages_the_weights_after_every_batch_and_restores_the_raw_ones(tmp_path):
    import keras

    from ml.model import build_model
    from ml.training import _WeightAverage

    model = build_model(**PRESETS["tiny"])
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    seen = []
    record = keras.callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(model.get_weights()))
    average = _WeightAverage.make(0.99)
    x, y = np.random.default_rng(0).integers(0, 255, (24, 36, 48, 3)).astype("uint8"), np.arange(24) % 7
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[record, average])
    assert len(seen) == 3 and not np.allclose(seen[0][0], seen[2][0])
    expected = seen[0]
    for n, weights in enumerate(seen[1:], start=1):
        d = (1 + n) / (10 + n)  # the warm-up decay, below 0.99 this early
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights)]
    with average.applied():
        inside = model.get_weights()
    assert all(np.allclose(a, e, atol=1e-6) for a, e in zip(inside, expected))
    assert all(np.array_equal(a, w) for a, w in zip(model.get_weights(), seen[2]))


def test_it_judges_checkpoints_on_accuracy_balanced_accuracy_and_auc():
    from ml.training import selection_score

    assert selection_score(0.8, 0.7, 0.9) == pytest.approx(0.8)
    assert selection_score(0.8, 0.7, float("nan")) == pytest.approx(0.75)  # one-sided validation data


def test_it_shows_the_class_the_cards_decision_rule_picks_with_unchanged_probabilities(
        classifier, tiny_model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    card = json.loads((copy / CARD_FILENAME).read_text())
    card["decision"]["class_bias"] = {c: (50.0 if c == "vasc" else 0.0) for c in CLASSES}
    (copy / CARD_FILENAME).write_text(json.dumps(card))
    images = [draw_lesion(dx, seed=5) for dx in CLASSES]
    leaning, plain = load_classifier(copy).predict_batch(images), classifier.predict_batch(images)
    assert {p.predicted_class for p in leaning} == {"vasc"}
    assert len({p.predicted_class for p in plain}) > 1
    for a, b in zip(leaning, plain):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)


def test_it_learns_the_synthetic_classes(classifier, held_out_dir):
    from ml.evaluation import evaluate

    result = evaluate(data_dir=held_out_dir, model_dir=classifier.model_dir)
    assert result["n_images"] == 6 * len(CLASSES)
    assert result["balanced_accuracy"] >= 0.6, result
    for key in ("accuracy", "malignant_auc", "per_class_recall", "confusion_matrix", "ece"):
        assert key in result


def test_it_predicts_calibrated_probabilities_for_pil_and_bytes(classifier):
    image = draw_lesion("vasc", seed=123)
    pred = classifier.predict(image)
    assert isinstance(pred, Prediction)
    assert list(pred.probabilities) == list(CLASSES)
    assert sum(pred.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert pred.malignant_probability == pytest.approx(sum(pred.probabilities[c] for c in MALIGNANT))
    probs = np.array([[pred.probabilities[c] for c in CLASSES]])
    assert pred.predicted_class == CLASSES[decide(probs, classifier.class_bias)[0]]
    assert pred.risk in ("low", "medium", "high")
    assert pred.model_version == classifier.version == classifier.card["version"]
    again = classifier.predict(_jpeg(image))
    assert again.predicted_class == pred.predicted_class
    assert json.loads(json.dumps(pred.to_dict()))["probabilities"] == pred.probabilities


def test_it_predicts_batches_like_single_images(classifier):
    distinct = [draw_lesion(dx, seed=i) for i, dx in enumerate(CLASSES)]
    batch = classifier.predict_batch(distinct * 10)  # 70: over one batch, across network chunks
    assert len(batch) == 70
    singles = [classifier.predict(image) for image in distinct]
    for i, pred in enumerate(batch):
        single = singles[i % len(distinct)]
        assert single.predicted_class == pred.predicted_class
        assert single.malignant_probability == pytest.approx(pred.malignant_probability, abs=1e-5)
    assert classifier.predict_batch([]) == []


def with_thresholds(model_dir, copy_dir, *, medium, high):
    """A copy of the model folder whose card bands risk at these thresholds."""
    shutil.copytree(model_dir, copy_dir)
    card_path = copy_dir / CARD_FILENAME
    card = json.loads(card_path.read_text())
    card["thresholds"] = {**card["thresholds"], "medium": medium, "high": high}
    card_path.write_text(json.dumps(card))
    return copy_dir


def test_it_derives_the_risk_band_from_the_card_thresholds(classifier, tmp_path):
    # The tiny model's own card has medium == high (its data separates perfectly): no medium band.
    images = [draw_lesion(dx, seed=7) for dx in CLASSES]
    predictions = classifier.predict_batch(images)
    malignant = sorted((pred.malignant_probability, i) for i, pred in enumerate(predictions))
    (lowest, low_i), (middle, middle_i), (highest, high_i) = malignant[0], malignant[3], malignant[-1]
    assert lowest < middle < highest
    medium_at, high_at = (lowest + middle) / 2, (middle + highest) / 2
    banded = load_classifier(with_thresholds(classifier.model_dir, tmp_path / "model",
                                             medium=medium_at, high=high_at))
    assert banded.thresholds["medium"] == medium_at and banded.thresholds["high"] == high_at

    risks = [pred.risk for pred in banded.predict_batch([images[i] for i in (low_i, middle_i, high_i)])]
    assert risks == ["low", "medium", "high"]


def test_it_raises_image_error_for_undecodable_bytes(classifier):
    with pytest.raises(ImageError):
        classifier.predict(b"GIF89a but not really")


def test_it_explains_with_the_same_numbers_and_a_png_of_the_input_aspect(classifier):
    image = draw_lesion("mel", size=(600, 450), seed=5)
    pred, png = classifier.explain(image)
    assert pred == classifier.predict(image)
    overlay = Image.open(io.BytesIO(png))
    assert overlay.format == "PNG" and overlay.size == (400, 300)
    small = draw_lesion("nv", size=(200, 150), seed=6)
    assert Image.open(io.BytesIO(classifier.explain(_jpeg(small))[1])).size == (200, 150)
    # A 12-megapixel phone JPEG: decoded once at a reduced scale, the same numbers as predict.
    phone = _jpeg(draw_lesion("mel", size=(4032, 3024), seed=7))
    pred, png = classifier.explain(phone)
    assert pred == classifier.predict(phone) and Image.open(io.BytesIO(png)).size == (400, 300)
    assert classifier.gradcam(phone)[1].shape == (756, 1008)


@pytest.mark.parametrize("center", [(55, 45), (150, 105)])
def test_it_puts_the_gradcam_peak_on_the_lesion(classifier, center):
    image = draw_lesion("mel", size=(200, 150), center=center, radius=26, seed=11)
    pred, heat = classifier.gradcam(image)
    assert heat.shape == (150, 200)
    assert 0 <= heat.min() and heat.max() == pytest.approx(1.0)
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    assert np.hypot(x - center[0], y - center[1]) < 26 + 20, (x, y)
    ys, xs = np.mgrid[:150, :200]
    inside = np.hypot(xs - center[0], ys - center[1]) < 26
    assert heat[inside].mean() > 2 * heat[~inside].mean()


# --- a portrait photo: turned to landscape for the model, its heatmap turned back -----------------

MODEL_INPUT = (160, 120)  # (width, height), the shipped model's; the tiny model's is checked below


def test_it_gives_a_portrait_photo_the_input_of_its_landscape_twin():
    landscape = draw_lesion("mel", size=(600, 450), seed=5)
    portrait = landscape.transpose(Image.Transpose.ROTATE_270)  # as a phone held upright takes it
    other_way = landscape.transpose(Image.Transpose.ROTATE_90)

    as_landscape = preprocess(landscape, MODEL_INPUT)
    # A landscape photo is resized as it always was: HAM10000's figures stay the same.
    resized = landscape.resize(MODEL_INPUT, Image.BILINEAR, reducing_gap=None)
    assert np.array_equal(as_landscape, np.asarray(resized))
    # A portrait one is turned, not squashed: the same input, up to the turn.
    assert np.array_equal(preprocess(portrait, MODEL_INPUT), as_landscape)
    assert np.array_equal(preprocess(other_way, MODEL_INPUT), np.rot90(as_landscape, 2))


def test_it_lays_a_portrait_photos_heatmap_over_it_upright(classifier):
    landscape = draw_lesion("mel", size=(600, 450), seed=5)
    portrait = landscape.transpose(Image.Transpose.ROTATE_270)

    prediction, png = classifier.explain(portrait)

    assert prediction == classifier.predict(landscape)
    assert Image.open(io.BytesIO(png)).size == (400, 533)  # the portrait's shape, 400 wide
    heat = classifier.gradcam(portrait)[1]
    assert heat.shape == (600, 450)
    assert np.allclose(heat, np.rot90(classifier.gradcam(landscape)[1], k=-1), atol=1e-6)


@pytest.mark.parametrize("center", [(45, 55), (105, 150)])
def test_it_puts_a_portrait_photos_gradcam_peak_on_the_lesion(classifier, center):
    assert classifier.input_size[0] > classifier.input_size[1]  # a landscape model input
    image = draw_lesion("mel", size=(150, 200), center=center, radius=26, seed=11)
    heat = classifier.gradcam(image)[1]
    assert heat.shape == (200, 150)
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    assert np.hypot(x - center[0], y - center[1]) < 26 + 20, (x, y)
    ys, xs = np.mgrid[:200, :150]
    inside = np.hypot(xs - center[0], ys - center[1]) < 26
    assert heat[inside].mean() > 2 * heat[~inside].mean()


# --- files that broke preprocessing (the uploads' tests build them) -----------------------------


def test_it_turns_a_photo_upright_whose_exif_has_a_malformed_tag():
    jpeg = half_dark_photo("JPEG", quality=95, exif=exif_with_a_malformed_make())
    upright = to_rgb(jpeg)
    assert upright.size == (120, 240)  # half_dark_photo: 240×120, turned
    assert is_dark(upright.getpixel((50, 40))) and not is_dark(upright.getpixel((50, 160)))


def test_it_raises_image_error_for_a_damaged_avif():
    with pytest.raises(ImageError):
        preprocess(avif_with_its_pixels_zeroed(), MODEL_INPUT)


@pytest.mark.parametrize(("mode", "dtype"),
                         [("I;16", np.uint16), ("I", np.int32), ("F", np.float32)])
def test_it_scales_deep_grey_images_to_8_bits(mode, dtype):
    samples = np.full((90, 120), 30000, dtype=dtype)
    image = Image.fromarray(samples)
    assert image.mode == mode
    assert preprocess(image, MODEL_INPUT)[0, 0].tolist() == [117, 117, 117]  # 30000 / 257
    assert preprocess(sixteen_bit_grey_png(30000), MODEL_INPUT)[0, 0].tolist() == [117, 117, 117]
    # An I or F image of 8-bit values is kept as it is.
    if mode != "I;16":
        eight_bit = Image.fromarray(np.full((90, 120), 200, dtype=dtype))
        assert preprocess(eight_bit, MODEL_INPUT)[0, 0].tolist() == [200, 200, 200]


def test_it_loads_once_per_process_and_path(tiny_model_dir):
    first = get_classifier(tiny_model_dir)
    assert get_classifier(str(tiny_model_dir)) is first
    assert get_classifier(tiny_model_dir / MODEL_FILENAME) is first


def test_it_refuses_a_corrupt_model_file(tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    data = bytearray((broken / MODEL_FILENAME).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (broken / MODEL_FILENAME).write_bytes(bytes(data))
    with pytest.raises(ModelArtifactError, match="corrupt"):
        load_classifier(broken)


def test_it_refuses_a_model_file_keras_cannot_read_even_with_a_matching_hash(tiny_model_dir, tmp_path):
    from ml.artifact import sha256_file

    broken = tmp_path / "garbage"
    shutil.copytree(tiny_model_dir, broken)
    (broken / MODEL_FILENAME).write_bytes(b"not a zip file at all")
    card = json.loads((broken / CARD_FILENAME).read_text())
    card["model_sha256"] = sha256_file(broken / MODEL_FILENAME)
    (broken / CARD_FILENAME).write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match="cannot load model"):
        load_classifier(broken)


def test_it_refuses_a_model_saved_over_the_file_after_its_card_was_read(tiny_model_dir, tmp_path,
                                                                        monkeypatch):
    """A retrain into the folder a process loads from: the new weights must not load with the
    old card's temperature and thresholds."""
    import keras

    import ml.inference

    folder = tmp_path / "retrained"
    shutil.copytree(tiny_model_dir, folder)
    other = keras.saving.load_model(folder / MODEL_FILENAME, compile=False)
    other.layers[-1].set_weights([w * 0 for w in other.layers[-1].get_weights()])
    other.save(tmp_path / "other.keras")  # a valid model with other weights
    read_card = ml.inference.read_card

    def read_card_then_retrain(model_dir, **options):
        card = read_card(model_dir, **options)
        shutil.copyfile(tmp_path / "other.keras", folder / MODEL_FILENAME)
        return card

    monkeypatch.setattr(ml.inference, "read_card", read_card_then_retrain)
    with pytest.raises(ModelArtifactError, match="changed while it was being loaded"):
        load_classifier(folder)


def test_it_refuses_a_mismatched_format_version(tiny_model_dir, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    card = json.loads((other / CARD_FILENAME).read_text())
    card["format_version"] = FORMAT_VERSION + 1
    (other / CARD_FILENAME).write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match="format version"):
        load_classifier(other)


@pytest.mark.parametrize("key, value, message", [
    ("thresholds", {"medium": 0.2}, "thresholds must be"),
    ("input_size", {"height": 36}, "input_size must be"),
    ("input_size", {"width": 48.0, "height": 36}, "input_size must be"),
    ("temperature", "warm", "temperature must be"),
    ("temperature", 0, "temperature must be"),
    ("logit_offset", {"nv": 0.7}, "logit_offset must give a number for each"),
    ("logit_offset", {**dict.fromkeys(CLASSES, 0.0), "mel": "-0.4"}, "logit_offset must"),
    ("logit_offset", {**dict.fromkeys(CLASSES, 0.0), "melanoma": 0.0}, "logit_offset must"),
    ("logit_offset", [0.0] * len(CLASSES), "logit_offset must"),
    ("classes", 7, "classes"),
])
def test_it_refuses_a_card_whose_values_are_malformed_as_an_unusable_model(
        tiny_model_dir, tmp_path, capsys, key, value, message):
    malformed = tmp_path / "malformed"
    shutil.copytree(tiny_model_dir, malformed)
    card = json.loads((malformed / CARD_FILENAME).read_text())
    card[key] = value
    (malformed / CARD_FILENAME).write_text(json.dumps(card))
    image = tmp_path / "lesion.png"
    draw_lesion("nv").save(image)

    with pytest.raises(ModelArtifactError, match=message):
        load_classifier(malformed)
    done = _run_cli(capsys, "predict", "--model", malformed, image)
    assert done.returncode == 2 and done.stderr.startswith("error: model card ") and message in done.stderr


def test_it_refuses_a_missing_artifact(tmp_path):
    with pytest.raises(ModelArtifactError, match="not found"):
        load_classifier(tmp_path)


def _run_cli(capsys, *args):
    """`python -m ml ARGS` in this process (TensorFlow is already imported here)."""
    from ml.__main__ import main

    capsys.readouterr()
    returncode = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, returncode, out, err)


def test_it_documents_the_command_line_without_importing_tensorflow():
    root = Path(__file__).resolve().parents[2]
    code = ("import sys, runpy; sys.argv = ['ml', 'predict', '--help']\n"
            "try:\n    runpy.run_module('ml', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "assert 'tensorflow' not in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Exit status" in done.stdout and "--json" in done.stdout


def test_it_refuses_zero_epochs_as_a_usage_error(tmp_path, capsys):
    from ml.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--epochs", "0"])
    assert exited.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_it_predicts_from_the_command_line_with_json_lines_and_error_lines(tiny_model_dir, tmp_path, capsys):
    good = tmp_path / "good.jpg"
    draw_lesion("vasc", seed=3).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    missing = tmp_path / "missing.jpg"
    done = _run_cli(capsys, "predict", "--json", "--model", tiny_model_dir, good, bad, missing, good)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["image"] for line in lines] == [str(good), str(bad), str(missing), str(good)]
    assert set(lines[0]) == {"image", "probabilities", "malignant_probability", "predicted_class",
                             "risk", "model_version"}
    assert list(lines[0]["probabilities"]) == list(CLASSES)
    assert "error" in lines[1] and "error" in lines[2] and lines[3] == lines[0]
    all_bad = _run_cli(capsys, "predict", "--json", "--model", tiny_model_dir, bad)
    assert all_bad.returncode == 1 and "error" in json.loads(all_bad.stdout)


def test_it_names_each_image_as_given_and_reads_paths_from_a_file(tiny_model_dir, tmp_path, capsys,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    draw_lesion("nv", seed=2).save(tmp_path / "good.jpg")
    draw_lesion("mel", seed=4).save(tmp_path / "-dash.jpg")
    (tmp_path / "folder").mkdir()
    given = ["./good.jpg", f"{tmp_path}//good.jpg", "folder/", "-dash.jpg"]
    done = _run_cli(capsys, "predict", "--json", "--model", tiny_model_dir, "--", *given)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["image"] for line in lines] == given  # as given, for a scorer to match on
    assert lines[0]["probabilities"] == lines[1]["probabilities"]
    assert lines[2]["error"].startswith("cannot read file: not a regular file")
    assert "probabilities" in lines[3]

    listing = tmp_path / "paths.txt"
    listing.write_text("./good.jpg\n\nfolder/\n")
    from_file = _run_cli(capsys, "predict", "--json", "--model", tiny_model_dir, "--files-from", listing, "--",
                         "-dash.jpg")
    assert [json.loads(line)["image"] for line in from_file.stdout.splitlines()] == [
        "./good.jpg", "folder/", "-dash.jpg"]
    with pytest.raises(SystemExit) as exited:
        _run_cli(capsys, "predict", "--json", "--model", tiny_model_dir)
    assert exited.value.code == 2


def test_it_predicts_batch_after_batch_in_the_order_given(tiny_model_dir, tmp_path, capsys, monkeypatch):
    # `predict` reads the next batch while the network runs on this one: lines must still come
    # out in the order of the paths, each error beside its own file, across batch boundaries
    paths = []
    for i, label in enumerate(["mel", "nv", "bcc", "vasc", "df"]):
        paths.append(tmp_path / f"{i}.png")
        draw_lesion(label, seed=i).save(paths[-1])
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    paths.insert(2, tmp_path / "bad.jpg")  # the last of the first batch of three
    at_once = [json.loads(line) for line in
               _run_cli(capsys, "predict", "--json", "--model", tiny_model_dir, *paths).stdout.splitlines()]
    monkeypatch.setattr("ml.inference.BATCH_SIZE", 3)
    done = _run_cli(capsys, "predict", "--json", "--model", tiny_model_dir, *paths)
    assert done.returncode == 0, done.stderr
    in_batches = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["image"] for line in in_batches] == [str(p) for p in paths]
    assert "error" in in_batches[2] and sum("error" in line for line in in_batches) == 1
    for one, other in zip(in_batches, at_once):
        assert one.keys() == other.keys()
        if "probabilities" in one:
            assert one["predicted_class"] == other["predicted_class"]
            assert abs(one["malignant_probability"] - other["malignant_probability"]) < 1e-5


def test_it_predicts_an_iphone_heic_photo_from_the_command_line(tiny_model_dir, tmp_path, capsys):
    lesion = draw_lesion("mel", seed=5)
    png, heic = tmp_path / "lesion.png", tmp_path / "IMG_0001.HEIC"
    lesion.save(png)
    lesion.save(heic, format="HEIF", quality=95)
    assert heic.read_bytes()[4:12] == b"ftypheic"
    done = _run_cli(capsys, "predict", "--json", "--model", tiny_model_dir, png, heic)
    assert done.returncode == 0, done.stderr
    from_png, from_heic = (json.loads(line) for line in done.stdout.splitlines())
    assert "error" not in from_heic
    # the same picture, lossily compressed: the same answer, nearly the same probability
    assert from_heic["predicted_class"] == from_png["predicted_class"]
    assert from_heic["malignant_probability"] == pytest.approx(from_png["malignant_probability"], abs=0.05)


def test_it_evaluates_from_the_command_line(tiny_model_dir, held_out_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    done = _run_cli(capsys, "evaluate", "--data", held_out_dir, "--model", tiny_model_dir, "--json", out)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    for key in ("n_images", "accuracy", "balanced_accuracy", "malignant_auc", "per_class_recall",
                "confusion_matrix", "ece"):
        assert key in result
    assert result["n_images"] == 6 * len(CLASSES)


def test_it_writes_null_not_nan_for_a_figure_the_data_cannot_give(tiny_model_dir, held_out_dir, tmp_path, capsys):
    benign = tmp_path / "benign"  # no malignant lesion: no malignant AUC
    shutil.copytree(held_out_dir, benign)
    csv = benign / "HAM10000_metadata.csv"
    header, *rows = csv.read_text().splitlines()
    csv.write_text("\n".join([header, *(row for row in rows if ",nv," in row)]) + "\n")
    out = tmp_path / "eval.json"
    done = _run_cli(capsys, "evaluate", "--data", benign, "--model", tiny_model_dir, "--json", out)
    assert done.returncode == 0, done.stderr

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    result = json.loads(out.read_text(), parse_constant=refuse)
    assert result["n_images"] == 6 and result["malignant_auc"] is None


def test_it_compares_two_models_on_the_validation_split_they_share(tiny_model_dir, tmp_path, capsys):
    data_dir = tiny_model_dir.parent / "data"
    twin = tmp_path / "twin"
    shutil.copytree(tiny_model_dir, twin)
    out = tmp_path / "compare.json"
    done = _run_cli(capsys, "compare", "--data", data_dir, "--a", tiny_model_dir, "--b", twin, "--split", "val",
                    "--json", out)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    card = json.loads((tiny_model_dir / CARD_FILENAME).read_text())
    assert result["n_images"] == card["data_split"]["n_val_images"]
    for key in ("accuracy", "balanced_accuracy", "malignant_auc"):
        assert result[key]["a"] == result[key]["b"] == pytest.approx(card["validation"][key], abs=1e-3)
        assert result[key]["difference"] == 0 and result[key]["interval"] == [0, 0]
    assert "balanced_accuracy" in done.stdout and "B better in" in done.stdout
    # a model validated on other images may have trained on these: refused
    card["data_split"]["val_image_ids_sha256"] = "0" * 64
    (twin / CARD_FILENAME).write_text(json.dumps(card))
    refused = _run_cli(capsys, "compare", "--data", data_dir, "--a", tiny_model_dir, "--b", twin, "--split", "val")
    assert refused.returncode == 1 and "validated on different images" in refused.stderr


def test_it_evaluates_the_model_on_its_own_validation_split_only(tiny_model_dir, held_out_dir):
    from ml.errors import DatasetError
    from ml.evaluation import evaluate

    data_dir = tiny_model_dir.parent / "data"  # where tests/conftest.py made the training data
    card = json.loads((tiny_model_dir / CARD_FILENAME).read_text())
    result = evaluate(data_dir=data_dir, model_dir=tiny_model_dir, split="val")
    assert result["n_images"] == card["data_split"]["n_val_images"]
    # the same images, preprocessing and decision rule as training's own scoring
    for key in ("accuracy", "balanced_accuracy", "malignant_auc"):
        assert result[key] == pytest.approx(card["validation"][key], abs=1e-3), key
    assert result["intervals"] == card["validation"]["intervals"]  # same lesions, same resamples
    with pytest.raises(DatasetError, match="validation split"):
        evaluate(data_dir=held_out_dir, model_dir=tiny_model_dir, split="val")


def test_it_refuses_a_model_whose_card_has_the_wrong_input_size(tiny_model_dir, tmp_path):
    other = tmp_path / "wrong-size"
    shutil.copytree(tiny_model_dir, other)
    card = json.loads((other / CARD_FILENAME).read_text())
    card["input_size"] = {"width": 64, "height": 48}
    (other / CARD_FILENAME).write_text(json.dumps(card))
    with pytest.raises(ModelArtifactError, match="do not match the card"):
        load_classifier(other)
