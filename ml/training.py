"""Training: lesion-disjoint split, in-memory batches with augmentation, class weights,
checkpoint on the validation scores of the class shown, calibration (ml.calibration), card, save.

It runs on Keras's default TensorFlow backend (CPU, as shipped), and under KERAS_BACKEND=jax on a
GPU machine that has JAX but no TensorFlow: the model file is the same either way."""

import logging
import math
import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import CLASSES, FORMAT_VERSION, MALIGNANT
from . import data as data_mod
from . import metrics as M
from .artifact import check_folder_writable, model_version, save_card, save_model_file, sha256_file, timestamp
from .calibration import calibrate
from .model import PRESETS, build_model

log = logging.getLogger(__name__)

LICENCE = (
    "The weights derive from the HAM10000 dataset (Tschandl P., Rosendahl C., Kittler H. The "
    "HAM10000 dataset, a large collection of multi-source dermatoscopic images of common pigmented "
    "skin lesions. Sci. Data 5, 180161 (2018), doi:10.7910/DVN/DBW86T), licensed CC BY-NC-SA 4.0: "
    "non-commercial use, attribution, share-alike. A screening aid, not a diagnosis."
)

LIMITS = [
    "A screening aid, not a diagnosis: a clinician must examine any mole that worries you.",
    "Trained on dermoscopic images (HAM10000); ordinary phone photos look different and the "
    "figures may not hold for them.",
    "HAM10000 comes mostly from fair-skinned patients in Austria and Australia; performance on "
    "darker skin is unknown.",
    "Only seven diagnoses are known to the model; any other lesion is forced into one of them.",
]


def rare_class_limit(val_counts: dict) -> str:
    """The limit that the split's rare classes put on its figures, with their counts."""
    return ("Validation figures come from one lesion-disjoint split; rare classes (dermatofibroma, "
            f"vascular lesions) have only {val_counts.get('df', 0)} and {val_counts.get('vasc', 0)} "
            "validation images, so their recall is uncertain.")


def class_weights(y, power) -> np.ndarray:
    """Per-class weights (inverse frequency ** power), normalised to mean 1 over the samples."""
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    w = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** power, 0.0)
    return w / (w[y].mean())


AUGMENT_PARAMS = 19  # per image: 8 transform coefficients, a 3x3 colour matrix, contrast, brightness


def augment_params(rng, n, height, width) -> np.ndarray:
    """(n, AUGMENT_PARAMS) float32 random augmentation parameters, drawn on the host with the
    run's seeded generator: flip, rotation (any angle), zoom and shift as one projective
    transform (output pixel (x, y) samples input cx + R(theta) (flip * (x - cx), y - cy) / scale
    + t), then saturation s, per-channel gain g and contrast c as one colour matrix, and a
    brightness shift b."""
    flip = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    theta = rng.uniform(-math.pi, math.pi, n)
    scale = np.exp(rng.uniform(math.log(0.85), math.log(1.25), n))  # > 1 zooms in
    tx = rng.uniform(-0.08, 0.08, n) * width
    ty = rng.uniform(-0.08, 0.08, n) * height
    cx, cy = (width - 1) / 2, (height - 1) / 2
    a0, a1 = flip * np.cos(theta) / scale, -np.sin(theta) / scale
    b0, b1 = flip * np.sin(theta) / scale, np.cos(theta) / scale
    a2 = cx - a0 * cx - a1 * cy + tx
    b2 = cy - b0 * cx - b1 * cy + ty
    zeros = np.zeros(n)
    transform = np.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
    s = rng.uniform(0.7, 1.3, (n, 1, 1))
    g = rng.uniform(0.9, 1.1, (n, 1, 3))
    c = rng.uniform(0.8, 1.25, (n, 1, 1))
    matrix = (s * np.eye(3)[None] + (1 - s) / 3.0) * g * c  # out_k = sum_j x_j * matrix[j, k]
    brightness = rng.uniform(-25.0, 25.0, n)
    return np.concatenate([transform, matrix.reshape(n, 9), c.reshape(n, 1), brightness[:, None]],
                          axis=1).astype(np.float32)


def augment_batch(x, params):
    """Apply augment_params' parameters to a float32 batch in [0, 255] (Keras ops, so any Keras
    backend runs it): the transform (bilinear, reflecting at the edges), then the colour
    matrix, with contrast around each image's mean, and the brightness shift."""
    from keras import ops

    x = ops.image.affine_transform(x, params[:, :8], interpolation="bilinear", fill_mode="reflect",
                                   data_format="channels_last")
    matrix = ops.reshape(params[:, 8:17], (-1, 3, 3))
    contrast, brightness = params[:, 17:18, None], params[:, 18:19, None]  # (n, 1, 1)
    mean = ops.mean(x, axis=(1, 2))[:, None, :]  # (n, 1, 3)
    flat = ops.reshape(x, (ops.shape(x)[0], -1, 3))
    out = ops.matmul(flat, matrix) + brightness + mean * (1 - contrast)
    return ops.clip(ops.reshape(out, ops.shape(x)), 0.0, 255.0)


def epoch_sizes(y, class_cap) -> np.ndarray:
    """Images of each class drawn per epoch: all of a class, or class_cap of the larger ones."""
    counts = np.bincount(y, minlength=len(CLASSES))
    return np.minimum(counts, class_cap) if class_cap else counts


def batches_per_epoch(sizes, batch_size) -> int:
    """Full batches in an epoch of sizes.sum() images (the last, partial one is dropped), or one
    batch of all of them when they do not fill one."""
    total = int(np.sum(sizes))
    return total // batch_size if total > batch_size else 1


def make_train_dataset(x, y, class_w, *, batch_size, augment, seed, class_cap=None):
    """Batches of (images, labels, sample weights) for one epoch after another. Each epoch draws
    every image of the small classes and a fresh random class_cap-sized subset of each larger
    class (nevi). With TensorFlow, a tf.data pipeline that augments on the CPU while the network
    trains; under another Keras backend, a generator that augments in one compiled call."""
    import keras

    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(y == c) for c in range(len(CLASSES))]
    sizes = epoch_sizes(y, class_cap)
    height, width = x.shape[1:3]

    def batches():
        idx = np.concatenate([rng.permutation(ix)[:k] for ix, k in zip(by_class, sizes)])
        idx = rng.permutation(idx)
        for i in range(0, batches_per_epoch(sizes, batch_size) * batch_size, batch_size):
            b = np.sort(idx[i:i + batch_size])
            yield (x[b], y[b], class_w[y[b]].astype(np.float32),
                   augment_params(rng, len(b), height, width))

    def prepare(xb, yb, wb, pb):
        xb = keras.ops.cast(xb, "float32")
        if augment:
            xb = augment_batch(xb, pb)
        return xb, keras.ops.one_hot(yb, len(CLASSES)), wb  # one-hot for label smoothing

    if keras.backend.backend() != "tensorflow":
        if keras.backend.backend() == "jax":
            import jax

            prepare = jax.jit(prepare)

        def forever():
            while True:
                yield from (prepare(*batch) for batch in batches())

        return forever()
    import tensorflow as tf

    ds = tf.data.Dataset.from_generator(batches, output_signature=(
        tf.TensorSpec([None, height, width, 3], tf.uint8), tf.TensorSpec([None], tf.int64),
        tf.TensorSpec([None], tf.float32), tf.TensorSpec([None, AUGMENT_PARAMS], tf.float32)))
    # lets Keras count steps
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches_per_epoch(sizes, batch_size)))
    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(3)


def predict_logits(model, x, *, tta_views=1, batch_size=128, fn=None) -> np.ndarray:
    """Logits for a uint8 array, averaged over test-time flips (the same code as inference)."""
    from .inference import make_logits_fn

    fn = fn or make_logits_fn(model, x.shape[1:3], tta_views)
    out = [np.asarray(fn(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def hardware() -> dict:
    """What trained the model: the accelerator (or CPU), the machine and the software."""
    import keras

    backend = keras.backend.backend()
    info = {"device": accelerator_name() or "CPU", "platform": platform.platform(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "keras": keras.__version__,
            "keras_backend": backend}
    if backend == "tensorflow":
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
    elif backend == "jax":
        import jax

        info["jax"] = jax.__version__
    return info


def accelerator_name() -> str | None:
    """The GPU the Keras backend trains on, or None on a CPU."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return None if device.platform == "cpu" else device.device_kind
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return None


def bf16_hardware() -> bool:
    """Whether the CPU multiplies bfloat16 natively (AMX or AVX-512 BF16); there, mixed
    precision trains 1.05x (AMD EPYC) to 1.4x (Xeon with AMX) faster. Elsewhere bfloat16 is
    emulated and slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def training_precision(cfg) -> str:
    """The Keras dtype policy for training: mixed_bfloat16 where the preset allows it and the
    hardware runs it natively (a GPU, or such a CPU), else float32. The shipped model is always
    float32."""
    native = accelerator_name() is not None or bf16_hardware()
    return "mixed_bfloat16" if cfg.get("mixed_precision") and native else "float32"


class _Schedule:
    """Warm-up then cosine learning rate over the run's progress, where progress is the larger
    of (steps done / planned steps) and (seconds elapsed / max_train_seconds). On an idle
    machine the planned epochs govern; on a busy one the time budget does, and the learning
    rate still anneals to its floor before training stops (the card records which)."""

    @staticmethod
    def make(cfg, steps_per_epoch, *, started):
        import keras

        total_steps = steps_per_epoch * cfg["epochs"]
        budget = float(cfg["max_train_seconds"])
        peak = cfg["learning_rate"]

        class Callback(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.epoch = 0
                self.time_progress = 0.0
                self.stopped_by = "epochs"

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_begin(self, batch, logs=None):
                step = self.epoch * steps_per_epoch + min(batch, steps_per_epoch - 1)
                self.time_progress = (time.perf_counter() - started) / budget
                self.progress = max(step / total_steps, self.time_progress)
                p = min(self.progress, 1.0)
                warm = 0.04
                if p < warm:
                    lr = peak * (0.1 + 0.9 * p / warm)
                else:
                    lr = peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * (p - warm) / (1 - warm))))
                self.model.optimizer.learning_rate.assign(lr)

            def on_epoch_end(self, epoch, logs=None):
                if self.time_progress >= 1.0 and epoch + 1 < cfg["epochs"]:
                    log.warning("stopping after epoch %d: time budget of %ss used", epoch + 1, budget)
                    self.stopped_by = "time budget"
                    self.model.stop_training = True

        return Callback()


class _WeightAverage:
    """Keras callback factory: an exponential moving average of all the model's weights
    (BatchNormalization statistics included), updated after every batch, with the usual
    warm-up (decay (1 + n) / (10 + n) while that is smaller). Checkpoints are judged and
    saved on the average: the raw weights swing from epoch to epoch on this small dataset."""

    @staticmethod
    def make(decay):
        import keras

        class Callback(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.decay = float(decay)
                self.updates = 0
                self.average = None

            def on_train_batch_end(self, batch, logs=None):
                weights = self.model.get_weights()
                if self.average is None:
                    self.average = weights
                else:
                    d = min(self.decay, (1 + self.updates) / (10 + self.updates))
                    for avg, w in zip(self.average, weights):
                        avg *= d
                        avg += (1 - d) * w
                self.updates += 1

            @contextmanager
            def applied(self):
                """The model holds the averaged weights inside the block, its own after it."""
                raw = self.model.get_weights()
                self.model.set_weights(self.average)
                try:
                    yield
                finally:
                    self.model.set_weights(raw)

        return Callback()


def selection_score(accuracy, balanced_accuracy, malignant_auc) -> float:
    """How a checkpoint is judged: the mean of the three figures the model is held to (accuracy
    and balanced accuracy of the class shown, malignant AUC); without the AUC where the
    validation data hold one side only."""
    figures = [accuracy, balanced_accuracy]
    if not math.isnan(malignant_auc):
        figures.append(malignant_auc)
    return sum(figures) / len(figures)


class _SelectOnShownClass:
    """Keras callback factory (built lazily so that importing this module needs no Keras).

    After each epoch it scores the averaged weights on validation and keeps the best. A
    checkpoint is judged on the class the site would show: the decision rule (``M.decide``) is
    fitted for it, and the score (``selection_score``) is the mean of accuracy and balanced
    accuracy after the rule and of the malignant AUC. The plain-argmax balanced accuracy would
    favour early checkpoints that over-call the rare classes, a prior shift that the rule undoes
    anyway; the AUC keeps rising after balanced accuracy has peaked, and the risk band rests on
    it. Every RAW_EVERY epochs it also scores the raw weights, so the card shows what averaging
    gave."""

    RAW_EVERY = 5

    @staticmethod
    def make(x_val, y_val, average, prior):
        import keras

        class Callback(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.best = -1.0
                self.best_epoch = 0
                self.best_weights = None
                self.history = []
                self.logits_fn = None
                self.t0 = time.perf_counter()

            def score(self):
                """(entry fields, selection score) of the weights the model holds now."""
                from .inference import make_logits_fn

                if self.logits_fn is None:
                    self.logits_fn = make_logits_fn(self.model, x_val.shape[1:3], 1)
                probs = M.softmax(predict_logits(self.model, x_val, fn=self.logits_fn))
                plain = M.classification_metrics(probs, y_val)
                tau, bias = M.fit_decision_bias(probs, y_val, prior)
                shown = M.classification_metrics(probs, y_val, bias)
                fields = {"val_accuracy": plain["accuracy"], "val_balanced_accuracy": plain["balanced_accuracy"],
                          "val_malignant_auc": plain["malignant_auc"], "tau": tau,
                          "val_shown_accuracy": shown["accuracy"],
                          "val_shown_balanced_accuracy": shown["balanced_accuracy"]}
                return fields, selection_score(shown["accuracy"], shown["balanced_accuracy"],
                                               plain["malignant_auc"])

            def on_epoch_end(self, epoch, logs=None):
                entry = {"epoch": epoch + 1, "loss": round(float((logs or {}).get("loss", float("nan"))), 4)}
                with average.applied():
                    fields, score = self.score()
                    if score > self.best:
                        self.best, self.best_epoch = score, epoch + 1
                        self.best_weights = self.model.get_weights()
                entry.update(fields)
                entry.update({"learning_rate": round(float(self.model.optimizer.learning_rate.numpy()), 6),
                              "seconds": round(time.perf_counter() - self.t0, 1)})
                if (epoch + 1) % _SelectOnShownClass.RAW_EVERY == 0:
                    raw, _ = self.score()
                    entry.update({f"raw_{k}": v for k, v in raw.items() if k.startswith("val_")})
                self.history.append(entry)
                log.info("epoch %(epoch)d loss %(loss).4f val acc %(val_accuracy).4f bacc "
                         "%(val_balanced_accuracy).4f auc %(val_malignant_auc).4f, shown (tau %(tau)s) acc "
                         "%(val_shown_accuracy).4f bacc %(val_shown_balanced_accuracy).4f (%(seconds).0fs)", entry)

        return Callback()


def train(*, data_dir, out_dir, epochs=None, preset="full", seed=0) -> dict:
    """Train on a HAM10000 folder, save model.keras + model_card.json in out_dir; return the card."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    started = time.perf_counter()
    cfg = dict(PRESETS[preset])
    if epochs is not None:
        if int(epochs) < 1:
            raise ValueError(f"epochs must be at least 1, not {epochs}")
        cfg["epochs"] = int(epochs)
    _check_out_dir(out_dir)
    records = data_mod.load_records(data_dir)
    train_recs, val_recs = data_mod.split_by_lesion(records, val_fraction=cfg["val_fraction"], seed=seed)
    if not train_recs or not val_recs:
        from .errors import DatasetError
        raise DatasetError("not enough lesions for a train/validation split")
    size = tuple(cfg["input_size"])
    t = time.perf_counter()
    x_train, x_val = data_mod.decode_all(train_recs, size), data_mod.decode_all(val_recs, size)
    y_train, y_val = data_mod.labels(train_recs), data_mod.labels(val_recs)
    log.info("decoded %d train + %d val images at %s in %.1fs", len(x_train), len(x_val), size,
             time.perf_counter() - t)

    import keras

    keras.utils.set_random_seed(seed)
    precision = training_precision(cfg)
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = build_model(seed=seed, **cfg)
        sizes = epoch_sizes(y_train, cfg.get("class_cap"))
        weights = class_weights(np.repeat(np.arange(len(CLASSES)), sizes), cfg["weight_power"])
        ds = make_train_dataset(x_train, y_train, weights, batch_size=cfg["batch_size"],
                                augment=cfg["augment"], seed=seed, class_cap=cfg.get("class_cap"))
        steps_per_epoch = batches_per_epoch(sizes, cfg["batch_size"])
        schedule = _Schedule.make(cfg, steps_per_epoch, started=started)
        if cfg["weight_decay"]:
            optimizer = keras.optimizers.AdamW(cfg["learning_rate"], weight_decay=cfg["weight_decay"])
            # decay the kernels only: BatchNormalization scales and shifts and the logits' bias
            # are not what overfits, and shrinking them fights the normalisation
            optimizer.exclude_from_weight_decay(
                var_list=[v for v in model.trainable_variables if len(v.shape) == 1])
        else:
            optimizer = keras.optimizers.Adam(cfg["learning_rate"])
        loss = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                    label_smoothing=cfg["label_smoothing"])
        model.compile(optimizer=optimizer, loss=loss)
        average = _WeightAverage.make(cfg["average_decay"])
        prior = np.bincount(y_train, minlength=len(CLASSES)) / len(y_train)
        callback = _SelectOnShownClass.make(x_val, y_val, average, prior)
        t = time.perf_counter()
        # tf.data starts each epoch afresh; another backend's endless generator is cut into epochs
        steps = None if keras.backend.backend() == "tensorflow" else steps_per_epoch
        model.fit(ds, epochs=cfg["epochs"], steps_per_epoch=steps, verbose=0,
                  callbacks=[schedule, average, callback], shuffle=False)
        fit_seconds = time.perf_counter() - t
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # The best weights in a fresh float32 model: runs anywhere whatever precision trained it,
    # and carries no optimizer state.
    model = build_model(seed=seed, **cfg)
    model.set_weights(callback.best_weights)

    card = _make_card(cfg, preset, seed, train_recs, val_recs, callback, fit_seconds, weights,
                      sizes, schedule.stopped_by, precision)
    logits = predict_logits(model, x_val, tta_views=cfg["tta_views"])
    card.update(calibrate(logits, y_val, [r.lesion_id for r in val_recs], card))
    model_path = save_model_file(model, out_dir)
    card["model_sha256"] = sha256_file(model_path)
    card["model_size_bytes"] = model_path.stat().st_size
    card["version"] = model_version(card["created"], preset, card["model_sha256"])
    card["training"]["total_seconds"] = round(time.perf_counter() - started, 1)
    save_card(card, out_dir)
    log.info("saved %s (%s)", model_path, card["version"])
    return card


def _check_out_dir(out_dir) -> None:
    """An MLError now, not after the whole training, where the model cannot be saved in out_dir
    (missing, it is made when the model is saved): read-only, no permission, a file in the way."""
    from .errors import MLError

    try:
        check_folder_writable(out_dir)
    except OSError as exc:
        raise MLError(f"cannot write the model to {out_dir}: {exc.strerror or exc}") from exc


def _make_card(cfg, preset, seed, train_recs, val_recs, callback, fit_seconds, class_weights_used,
               images_per_epoch, stopped_by, precision) -> dict:
    """The card but for its calibration (ml.calibration.calibrate fills that in from what this
    records of the split and the epoch) and the model file's hash, size and version."""
    split = data_mod.split_info(train_recs, val_recs, seed=seed, val_fraction=cfg["val_fraction"])
    return {
        "format_version": FORMAT_VERSION,
        "version": None,  # filled in once the model file's hash is known
        "created": timestamp(),
        "preset": preset,
        "input_size": {"width": cfg["input_size"][0], "height": cfg["input_size"][1]},
        "input": "RGB uint8 image resized to input_size by ml.preprocessing.preprocess; outputs logits",
        "classes": list(CLASSES),
        "malignant_classes": list(MALIGNANT),
        # None: filled in by calibrate, as are thresholds, decision and validation
        "temperature": None, "logit_offset": None, "logit_offset_rule": None,
        "tta_views": cfg["tta_views"],
        "thresholds": None,
        "decision": None,
        "threshold_rule": M.THRESHOLD_RULE,
        "data_split": split,
        "training": {
            "hardware": hardware(),
            "precision": precision,
            "fit_seconds": round(fit_seconds, 1),
            "epochs_planned": cfg["epochs"],
            "epochs_run": len(callback.history),
            "stopped_by": stopped_by,
            "best_epoch": callback.best_epoch,
            "selection": "checkpoint of the weights' moving average (decay "
                         f"{cfg['average_decay']}, updated every batch) with the highest mean of "
                         "validation accuracy and balanced accuracy of the class shown and "
                         "malignant AUC",
            "class_weights": {c: round(float(w), 4) for c, w in zip(CLASSES, class_weights_used)},
            "images_per_epoch": {c: int(k) for c, k in zip(CLASSES, images_per_epoch)},
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
            "history": callback.history,
        },
        "validation": None,
        "limits": LIMITS + [rare_class_limit(split["val_counts"])],
        "licence": LICENCE,
    }
