"""Loading the shipped model and classifying images (TensorFlow is imported lazily)."""

import hashlib
import io
import logging
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import CARD_FILENAME, CLASSES, DEFAULT_MODEL_DIR, MODEL_FILENAME
from . import metrics as M
from .artifact import check_model_hash, file_stamp, read_card, resolve_model_dir
from .errors import ModelArtifactError
from .preprocessing import (DECODE_MIN_SIDE, decode_side, oriented_like, preprocess, to_rgb,
                            turned_back)

log = logging.getLogger(__name__)

BATCH_SIZE = 64  # images `python -m ml predict` reads and decodes at a time
# Images per call of the network: 8 (32 with the four test-time views) keep its activations
# within the CPU's caches. 64 at once was 1.3-1.4x slower on a 2-core AVX2 EPYC
# (2026-12-02, three runs alternating 64, 2, 4, 8 and 12 in one process; 8 was the fastest).
# On a Xeon with AVX-512 and 2 MB of L2 a core (2026-12-03) it is the other way round: 541
# images/s in chunks of 8 against 626 in one call. 8 is kept for the machine near the target.
NETWORK_CHUNK = 8
# Tried on that machine and not taken: ONNX Runtime 1.32 running the traced function converted
# by tf2onnx 1.17 at load. Bench medians of 3 runs: 147 against TensorFlow's 146 images/s in the
# same runs (0.95-1.35x) and 11.1 against 14.5 ms a photo, for a load of 2.1 s instead of 1.3 s
# and a peak RSS of 1,191 MB instead of 844 MB.
# Nor TensorFlow Lite's interpreter with XNNPACK, 2 threads, the folded network converted at load
# (2026-12-05, another AVX2 EPYC, 64 images, four views, in turn with TensorFlow three times):
# 229, 195 and 218 against 216, 158 and 168 images/s (1.06-1.3x), for 1.5 s more load, and
# tf.lite.Interpreter is deprecated in favour of the separate LiteRT package.
# Nor XLA (the same function traced with jit_compile=True; 2026-12-07, an AVX2 EPYC, 64 images,
# seven runs alternating with TensorFlow's): 166 against 171 images/s in chunks of 8, 163
# against 144 in one call, 7.4 against 9.4 ms a photo, the same logits to 2e-6, for 2 s more
# load for each batch shape compiled.
OVERLAY_MAX_WIDTH = DECODE_MIN_SIDE  # a large JPEG is decoded at least this wide: no upscaling


@dataclass(frozen=True)
class Prediction:
    probabilities: dict          # class code -> calibrated probability, all CLASSES, sums to 1
    malignant_probability: float  # P(akiec) + P(bcc) + P(mel)
    predicted_class: str
    risk: str                    # "low" | "medium" | "high"
    model_version: str

    def to_dict(self) -> dict:
        return asdict(self)


def make_logits_fn(model, hw, tta_views=1):
    """A function uint8 (n, h, w, 3) -> logits averaged over test-time flips, traced by
    TensorFlow (with the default backend, as the site runs).

    tta_views: 1 (as is), 2 (+ horizontal flip) or 4 (+ vertical flip, + both); see TTA_VIEWS.
    Written in Keras ops so that training also runs under another Keras backend (JAX on a GPU
    machine without TensorFlow, see ml.training), where the function is left untraced.
    """
    import keras
    from keras import ops

    def logits_fn(x):
        x = ops.cast(x, "float32")
        views = [x]
        if tta_views >= 2:
            views.append(ops.flip(x, axis=2))
        if tta_views >= 4:
            views += [ops.flip(x, axis=1), ops.flip(ops.flip(x, axis=1), axis=2)]
        out = model(ops.concatenate(views, axis=0), training=False)
        return ops.mean(ops.reshape(out, (len(views), -1, out.shape[-1])), axis=0)

    if keras.backend.backend() != "tensorflow":
        return logits_fn
    import tensorflow as tf

    h, w = int(hw[0]), int(hw[1])
    return tf.function(logits_fn, input_signature=[tf.TensorSpec([None, h, w, 3], tf.uint8)],
                       reduce_retracing=True)


class Classifier:
    """A loaded model and its card. Thread-safe for prediction."""

    def __init__(self, model, card: dict, model_dir: Path):
        self.model = model
        self.card = card
        self.model_dir = model_dir
        self.version = card["version"]
        self.input_size = (int(card["input_size"]["width"]), int(card["input_size"]["height"]))
        self.temperature = float(card["temperature"])
        # Cards from before the prior-shift offset have none: their temperature was fitted
        # without it, so zeros keep their probabilities as they were.
        self.logit_offset = _by_class(card.get("logit_offset", {}))
        self.thresholds = dict(card["thresholds"])
        # cards without a decision rule (older ones) show the plain argmax
        self.class_bias = _by_class(card.get("decision", {}).get("class_bias", {}))
        self._logits = make_logits_fn(model, (self.input_size[1], self.input_size[0]),
                                      int(card.get("tta_views", 1)))
        self._cam_fn = None
        self._lock = threading.Lock()

    # -- prediction ---------------------------------------------------------------------------
    def preprocess(self, image, *, original: bool = False) -> np.ndarray:
        """uint8 (h, w, 3) model input for a PIL image or bytes (raises ImageError); original: a
        file as its owner sent it (ml.preprocessing.decoded)."""
        return preprocess(image, self.input_size, original=original)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """The network's logits for a uint8 array (n, h, w, 3) of preprocessed images, averaged
        over the card's test-time views."""
        if len(x) == 0:
            return np.zeros((0, len(CLASSES)), np.float32)
        return np.concatenate([self._logits(x[i:i + NETWORK_CHUNK]).numpy()
                               for i in range(0, len(x), NETWORK_CHUNK)])

    def predict_arrays(self, x: np.ndarray) -> list[Prediction]:
        """Predictions for a uint8 array (n, h, w, 3) of preprocessed images."""
        if len(x) == 0:
            return []
        probs = M.softmax(self.logits(x), self.temperature, self.logit_offset)
        malignant = M.malignant_probability(probs)
        shown = M.decide(probs, self.class_bias)
        return [self._prediction(p, float(m), int(k)) for p, m, k in zip(probs, malignant, shown)]

    def predict(self, image) -> Prediction:
        return self.predict_arrays(self.preprocess(image)[None])[0]

    def predict_batch(self, images) -> list[Prediction]:
        images = list(images)
        if not images:
            return []
        return self.predict_arrays(np.stack([self.preprocess(im) for im in images]))

    def _prediction(self, probs: np.ndarray, malignant: float, shown: int) -> Prediction:
        return Prediction(
            probabilities={c: float(p) for c, p in zip(CLASSES, probs)},
            malignant_probability=malignant,
            predicted_class=CLASSES[shown],
            risk=M.risk_band(malignant, self.thresholds),
            model_version=self.version,
        )

    # -- explanation ----------------------------------------------------------------------------
    def gradcam(self, image) -> tuple[Prediction, np.ndarray]:
        """Prediction and a Grad-CAM map in [0, 1] of the predicted class, shaped like the
        decoded, upright input image: (height, width), a portrait one's too. A large JPEG decodes at
        a reduced scale, as for predict (see ml.preprocessing.DECODE_MIN_SIDE)."""
        return self._gradcam(self._decode(image))

    def _decode(self, image):
        """The RGB image that preprocess would decode from image (same scale, same pixels)."""
        return to_rgb(image, decode_side(self.input_size))

    def _gradcam(self, rgb) -> tuple[Prediction, np.ndarray]:
        import tensorflow as tf

        seen = oriented_like(rgb, self.input_size)  # a portrait photo turned, as preprocess does
        x = preprocess(seen, self.input_size)[None]
        prediction = self.predict_arrays(x)[0]
        cam = self._get_cam_fn()(x, CLASSES.index(prediction.predicted_class))
        heat = tf.image.resize(cam[..., None], (seen.height, seen.width), method="bilinear")
        # turned back, the map lines up with the photo as the patient took it
        heat = turned_back(heat.numpy()[..., 0], rgb.size, self.input_size)
        heat = np.clip(heat, 0.0, None)
        if heat.max() > 0:
            heat = heat / heat.max()
        return prediction, heat.astype(np.float32)

    def explain(self, image) -> tuple[Prediction, bytes]:
        """Prediction (same numbers as predict) and a PNG of the Grad-CAM heatmap over the photo."""
        rgb = self._decode(image)  # once, for the model input and the overlay
        prediction, heat = self._gradcam(rgb)
        return prediction, overlay_png(rgb, heat)

    def _get_cam_fn(self):
        """Traced Grad-CAM: uint8 (1, h, w, 3), class index -> (h', w') map of the CAM layer."""
        with self._lock:
            if self._cam_fn is None:
                import keras
                import tensorflow as tf

                from .model import CAM_LAYER

                cam_model = keras.Model(self.model.inputs,
                                        [self.model.get_layer(CAM_LAYER).output, self.model.output])
                h, w = self.input_size[1], self.input_size[0]

                @tf.function(input_signature=[tf.TensorSpec([1, h, w, 3], tf.uint8),
                                              tf.TensorSpec([], tf.int32)])
                def cam_fn(x, cls):
                    with tf.GradientTape() as tape:
                        features, logits = cam_model(tf.cast(x, tf.float32), training=False)
                        score = tf.gather(logits, cls, axis=1)
                    grads = tape.gradient(score, features)
                    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
                    return tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0]

                self._cam_fn = cam_fn
            return self._cam_fn


def _by_class(mapping) -> np.ndarray:
    """A card's per-class numbers in CLASSES order; a class it leaves out counts 0."""
    return np.array([float(mapping.get(c, 0.0)) for c in CLASSES])


def _jet(v: np.ndarray) -> np.ndarray:
    """A jet-like colour map: [0, 1] -> uint8 RGB."""
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def overlay_png(rgb, heat: np.ndarray, *, max_width=OVERLAY_MAX_WIDTH) -> bytes:
    """PNG bytes of the heatmap blended over the image (downscaled to at most max_width)."""
    from PIL import Image

    if rgb.width > max_width:
        size = (max_width, max(1, round(rgb.height * max_width / rgb.width)))
        rgb = rgb.resize(size, Image.BILINEAR)
        heat = np.asarray(Image.fromarray((heat * 255).astype(np.uint8)).resize(size, Image.BILINEAR)) / 255.0
    photo = np.asarray(rgb, dtype=np.float32)
    alpha = (0.25 + 0.45 * heat)[..., None]
    blended = photo * (1 - alpha) + _jet(heat).astype(np.float32) * alpha
    buf = io.BytesIO()
    Image.fromarray(blended.clip(0, 255).astype(np.uint8)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def load_classifier(model_dir=DEFAULT_MODEL_DIR) -> Classifier:
    """Load and check an artifact folder (or its model.keras path); raises ModelArtifactError."""
    model_dir = resolve_model_dir(model_dir)
    card = read_card(model_dir, check_model=False)  # the hash is checked on the bytes loaded
    model = _load_network(model_dir / MODEL_FILENAME, card)
    expected = (None, card["input_size"]["height"], card["input_size"]["width"], 3)
    if tuple(model.input_shape) != expected or model.output_shape[-1] != len(CLASSES):
        raise ModelArtifactError(f"model shapes {model.input_shape} -> {model.output_shape} do not "
                                 f"match the card ({expected} -> {len(CLASSES)} classes)")
    classifier = Classifier(_inference_network(model), card, model_dir)
    classifier.predict_arrays(np.zeros((1, expected[1], expected[2], 3), np.uint8))  # trace once
    return classifier


def _load_network(path, card):
    """The Keras model in path, from bytes read once and checked against the card's hash: a new
    model saved over path after the card was read (a retrain into the folder the site uses)
    must not load with the old card's temperature and thresholds."""
    import keras

    data = path.read_bytes()
    check_model_hash(card, hashlib.sha256(data).hexdigest(), path)
    with tempfile.TemporaryDirectory(prefix="molesite-model-") as folder:
        copy = Path(folder) / MODEL_FILENAME  # keras.saving.load_model reads a .keras path only
        copy.write_bytes(data)
        try:
            return keras.saving.load_model(copy, compile=False)
        except Exception as exc:  # Keras raises a zoo of errors for a damaged zip / config
            raise ModelArtifactError(f"cannot load model {path}: {exc}") from exc


def _inference_network(model):
    """The stored network with its BatchNormalization folded into the convolutions (1.3x the
    batch throughput on a 2-core Xeon, about 1x on an AVX2 EPYC: bench/bench_inference.py),
    once a probe batch shows that the folded one gives the same logits; otherwise the stored
    network as it is."""
    from .model import fold_batchnorm

    folded = fold_batchnorm(model)
    if folded is None:
        return model
    probe = np.random.default_rng(0).integers(0, 256, (2, *model.input_shape[1:]), dtype=np.uint8)
    stored = model(probe, training=False).numpy()
    tolerance = 1e-4 * max(1.0, float(np.abs(stored).max()))
    if not np.allclose(folded(probe, training=False).numpy(), stored, rtol=0, atol=tolerance):
        log.warning("folding BatchNormalization changed the logits; using the stored network as it is")
        return model
    return folded


# model folder -> (stamp of its two files when the load began, the classifier loaded)
_cache: dict[Path, tuple[tuple, Classifier]] = {}
_cache_lock = threading.Lock()


def get_classifier(model_dir=DEFAULT_MODEL_DIR) -> Classifier:
    """The classifier for model_dir, shared by the process and loaded again once its card or
    model file changes (a recalibration, a new model copied in), so that a running worker stamps
    its results with the card the pages show. Raises ModelArtifactError when the files now on
    disk cannot be loaded (a pair copied in half-way): the card the old model came with is gone."""
    key = _cache_key(model_dir)
    classifier = _cached(key, _artifact_stamp(key))
    if classifier is not None:
        return classifier
    with _cache_lock:
        # Stamped before loading: files that change during the load are loaded again next call.
        stamp = _artifact_stamp(key)
        classifier = _cached(key, stamp)  # another thread may have loaded these files meanwhile
        if classifier is None:
            _cache.pop(key, None)  # a failed load leaves no model whose card is gone
            classifier = load_classifier(key)
            if stamp is not None:
                _cache[key] = (stamp, classifier)
        return classifier


def _cache_key(model_dir) -> Path:
    """The folder as named, symbolic links not followed: a deployment that points a link at a new
    folder (card and model swapped together) replaces the entry under that name, through its
    stamp, where the resolved folder would be a new key each time, each old model kept."""
    path = Path(model_dir).expanduser().absolute()
    return path.parent if path.is_file() else path


def _cached(key: Path, stamp: tuple | None) -> Classifier | None:
    """The classifier loaded from the files of folder key as stamp finds them, if any."""
    entry = _cache.get(key)
    if entry is None or stamp is None or entry[0] != stamp:
        return None
    return entry[1]


def _artifact_stamp(model_dir: Path) -> tuple | None:
    """The file_stamp of the card and of the model file, or None when either is missing. Two
    stats a call: far cheaper than a photo."""
    try:
        return tuple(file_stamp(model_dir / name) for name in (CARD_FILENAME, MODEL_FILENAME))
    except OSError:
        return None
