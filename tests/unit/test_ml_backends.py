"""Training runs under another Keras backend too: JAX, as on a GPU machine that has no
TensorFlow. The augmentation is the same there, and the model file it writes is one the
TensorFlow site reads and scores as training did."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ml import CARD_FILENAME, CLASSES
from ml.synthetic import make_dataset
from ml.training import AUGMENT_PARAMS, augment_batch, augment_params

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, env: dict) -> subprocess.CompletedProcess:
    """Run code in a fresh Python process with env as its whole environment; it must succeed."""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _under_jax(code: str) -> subprocess.CompletedProcess:
    return _python(code, {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})


def _identity(n) -> np.ndarray:
    params = np.zeros((n, AUGMENT_PARAMS), np.float32)
    params[:, [0, 4]] = 1.0  # transform x_in = x, y_in = y
    params[:, 8:17] = np.eye(3).ravel()
    params[:, 17] = 1.0  # contrast
    return params


def test_it_leaves_an_image_as_it_is_under_the_identity_and_mirrors_it_under_a_flip():
    x = np.random.default_rng(0).integers(0, 256, (2, 12, 16, 3)).astype(np.float32)
    same = np.asarray(augment_batch(x, _identity(2)))
    np.testing.assert_allclose(same, x, atol=1e-3)

    mirror = _identity(2)
    mirror[:, 0], mirror[:, 2] = -1.0, 16 - 1  # x_in = (w - 1) - x
    np.testing.assert_allclose(np.asarray(augment_batch(x, mirror)), x[:, :, ::-1], atol=1e-3)

    brighter = _identity(2)
    brighter[:, 18] = 30.0
    np.testing.assert_allclose(np.asarray(augment_batch(x, brighter)), np.minimum(x + 30, 255), atol=1e-3)


def test_it_draws_the_recipes_augmentation_ranges():
    params = augment_params(np.random.default_rng(0), 4000, 120, 160)
    assert params.shape == (4000, AUGMENT_PARAMS) and params.dtype == np.float32
    a0, a1, b0, b1 = params[:, 0], params[:, 1], params[:, 3], params[:, 4]
    determinant = a0 * b1 - a1 * b0  # flip sign / scale ** 2
    assert 0.45 < (determinant < 0).mean() < 0.55  # half of the images mirrored
    scale = 1 / np.sqrt(np.abs(determinant))
    assert scale.min() >= 0.85 - 1e-4 and scale.max() <= 1.25 + 1e-4
    angles = np.arctan2(-a1, b1)  # the rotation, whatever the flip
    assert angles.min() < -0.9 * math.pi and angles.max() > 0.9 * math.pi
    contrast, brightness = params[:, 17], params[:, 18]
    assert contrast.min() >= 0.8 and contrast.max() <= 1.25
    assert brightness.min() >= -25 and brightness.max() <= 25


def test_it_augments_alike_under_tensorflow_and_jax(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (8, 30, 40, 3)).astype(np.float32)
    params = augment_params(np.random.default_rng(2), 8, 30, 40)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "params.npy", params)
    _under_jax(
        "import numpy as np\n"
        "from ml.training import augment_batch\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r}); p = np.load({str(tmp_path / 'params.npy')!r})\n"
        f"np.save({str(tmp_path / 'jax.npy')!r}, np.asarray(augment_batch(x, p)))\n")
    under_tensorflow = np.asarray(augment_batch(x, params))
    assert np.abs(under_tensorflow - x).mean() > 10  # the images did change
    np.testing.assert_allclose(np.load(tmp_path / "jax.npy"), under_tensorflow, atol=0.01)


def test_it_trains_under_jax_a_model_that_tensorflow_scores_as_training_did(tmp_path):
    from ml.evaluation import evaluate

    data_dir = make_dataset(tmp_path / "data", per_class=12, seed=0)
    model_dir = tmp_path / "model"
    _under_jax(
        "from ml import training\n"
        "from ml.model import PRESETS\n"
        "PRESETS['tiny'] = dict(PRESETS['tiny'], augment=True)  # the generator's compiled path too\n"
        f"training.train(data_dir={str(data_dir)!r}, out_dir={str(model_dir)!r}, preset='tiny')\n")
    card = json.loads((model_dir / CARD_FILENAME).read_text())
    hardware = card["training"]["hardware"]
    assert hardware["keras_backend"] == "jax" and hardware["jax"] and "tensorflow" not in hardware
    assert card["training"]["epochs_run"] == card["training"]["epochs_planned"]
    result = evaluate(data_dir=data_dir, model_dir=model_dir, split="val")  # TensorFlow, here
    for key in ("accuracy", "balanced_accuracy", "malignant_auc"):
        assert result[key] == pytest.approx(card["validation"][key], abs=1e-3), key
    assert result["balanced_accuracy"] > 0.5  # it learned the synthetic classes (chance: 1/7)


def test_a_process_on_tensorflow_loads_and_runs_the_model_without_importing_jax():
    # TensorFlow imports JAX when it is installed; ml marks it absent under TensorFlow (108 MB).
    env = {key: value for key, value in os.environ.items() if key not in ("KERAS_BACKEND", "KERAS_HOME")}
    code = ("import sys\n"
            "from PIL import Image\n"
            "from ml.inference import load_classifier\n"
            "prediction = load_classifier().predict(Image.new('RGB', (200, 150), (160, 110, 90)))\n"
            "print(prediction.predicted_class, sys.modules.get('jax'))\n")
    shown, jax_module = _python(code, env).stdout.split()
    assert shown in CLASSES
    assert jax_module == "None"


@pytest.mark.parametrize("env, keras_json, on_tensorflow", [
    ({}, None, True),
    ({"KERAS_BACKEND": "tensorflow"}, None, True),
    ({"KERAS_BACKEND": "jax"}, None, False),
    ({}, {"backend": "jax"}, False),
    ({"KERAS_BACKEND": "tensorflow"}, {"backend": "jax"}, True),
    ({}, "not json", True),
    ({"KERAS_BACKEND": ""}, {"backend": "jax"}, False),  # Keras ignores an empty variable
])
def test_it_reads_the_keras_backend_as_keras_does(tmp_path, monkeypatch, env, keras_json, on_tensorflow):
    import ml

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if keras_json is not None:
        text = keras_json if isinstance(keras_json, str) else json.dumps(keras_json)
        (tmp_path / "keras.json").write_text(text)
    assert ml._keras_backend_is_tensorflow() is on_tensorflow


def test_it_reads_keras_json_from_the_home_folder_without_keras_home(tmp_path, monkeypatch):
    import ml

    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".keras").mkdir()
    (tmp_path / ".keras" / "keras.json").write_text(json.dumps({"backend": "jax"}))
    assert ml._keras_backend_is_tensorflow() is False
