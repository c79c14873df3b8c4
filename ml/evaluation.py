"""Scoring a model on a labelled HAM10000 folder (`python -m ml evaluate`)."""

import numpy as np

from . import DEFAULT_MODEL_DIR
from . import data as data_mod
from . import metrics as M
from .errors import DatasetError
from .inference import load_classifier


def evaluate(*, data_dir, model_dir=DEFAULT_MODEL_DIR, split="all") -> dict:
    """Metrics of the model on every image of data_dir (split="all") or on the model's own
    validation split (split="val": re-derived with the card's seed and checked by hash), with
    95% intervals of accuracy, balanced accuracy and malignant AUC (lesion-level bootstrap)."""
    classifier = load_classifier(model_dir)
    records = data_mod.load_records(data_dir)
    if split == "val":
        info = classifier.card["data_split"]
        _, records = data_mod.split_by_lesion(records, val_fraction=info["val_fraction"], seed=info["seed"])
        if data_mod.ids_sha256(r.image_id for r in records) != info["val_image_ids_sha256"]:
            raise DatasetError("this folder does not reproduce the model's validation split "
                               "(different images); use --split all")
    elif split != "all":
        raise ValueError(f"unknown split {split!r}")
    x = data_mod.decode_all(records, classifier.input_size)
    y = data_mod.labels(records)
    preds = classifier.predict_arrays(x)
    probs = np.array([[p.probabilities[c] for c in classifier.card["classes"]] for p in preds])
    result = {"model_version": classifier.version, "data_dir": str(data_dir), "split": split}
    result.update(M.classification_metrics(probs, y, classifier.class_bias))
    mal = M.is_malignant(y)
    result["at_thresholds"] = M.threshold_metrics(M.malignant_probability(probs), mal, classifier.thresholds)
    result["intervals"] = M.bootstrap_intervals(probs, y, [r.lesion_id for r in records], classifier.class_bias)
    result["risk_counts"] = {band: sum(p.risk == band for p in preds) for band in ("low", "medium", "high")}
    return result
