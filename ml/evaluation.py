"""Scoring models on a labelled HAM10000 folder (`python -m ml evaluate` and `ml compare`)."""

import numpy as np

from . import DEFAULT_MODEL_DIR
from . import data as data_mod
from . import metrics as M
from .errors import DatasetError
from .inference import load_classifier


def evaluate(*, data_dir, model_dir=DEFAULT_MODEL_DIR, split="all") -> dict:
    """Metrics of the model on every image of data_dir (split="all") or on the model's own
    validation split (split="val": the card's validation image ids, or for an older card without
    them the split re-derived with its seed and checked by hash), with 95% intervals of accuracy,
    balanced accuracy and malignant AUC (lesion-level bootstrap). n_training_images counts the
    scored images the model trained on (None when its card does not list them)."""
    classifier = load_classifier(model_dir)
    records = _records(data_dir, classifier.card, split)
    probs, preds, y = _score(classifier, records)
    result = {"model_version": classifier.version, "data_dir": str(data_dir), "split": split,
              "n_training_images": n_training_images(records, classifier.card)}
    result.update(M.classification_metrics(probs, y, classifier.class_bias))
    mal = M.is_malignant(y)
    result["at_thresholds"] = M.threshold_metrics(M.malignant_probability(probs), mal, classifier.thresholds)
    result["intervals"] = M.bootstrap_intervals(probs, y, [r.lesion_id for r in records], classifier.class_bias)
    result["risk_counts"] = {band: sum(p.risk == band for p in preds) for band in ("low", "medium", "high")}
    return result


def compare(*, data_dir, model_a, model_b, split="all") -> dict:
    """Model B against model A on the same images: each one's accuracy, balanced accuracy and
    malignant AUC, and the differences (B - A) with paired lesion-level bootstrap intervals.
    split="val" scores the validation split the two models share (their cards must name the
    same images), so that neither is scored on images it trained on; n_training_images counts,
    for each, the scored images it trained on."""
    a, b = load_classifier(model_a), load_classifier(model_b)
    if split == "val":
        hashes = {c.card["data_split"].get("val_image_ids_sha256") for c in (a, b)}
        if len(hashes) != 1:
            raise DatasetError("the two models were validated on different images, so one may have "
                               "trained on the other's validation split; compare them with --split all "
                               "on a folder that neither saw")
    records = _records(data_dir, a.card, split)
    x = data_mod.decode_all(records, a.input_size)
    probs_a, _, y = _score(a, records, x)
    probs_b, _, _ = _score(b, records, x if b.input_size == a.input_size else None)
    result = {"model_a": a.version, "model_b": b.version, "data_dir": str(data_dir), "split": split,
              "n_images": len(records), "n_lesions": len({r.lesion_id for r in records}),
              "n_training_images": {"a": n_training_images(records, a.card),
                                    "b": n_training_images(records, b.card)}}
    result.update(M.paired_differences(probs_a, probs_b, y, [r.lesion_id for r in records],
                                       a.class_bias, b.class_bias))
    return result


def n_training_images(records, card) -> int | None:
    """How many of records the card's model trained on; None for a card that lists no ids."""
    ids = card.get("data_split", {}).get("train_image_ids")
    if not isinstance(ids, list):
        return None
    ids = set(ids)
    return sum(r.image_id in ids for r in records)


def _records(data_dir, card, split):
    records = data_mod.load_records(data_dir)
    if split == "all":
        return records
    if split != "val":
        raise ValueError(f"unknown split {split!r}")
    return validation_records(records, card)


# Where to go instead: not to --split all on this folder, which may hold the training photos.
_ELSEWHERE = ("run --split val on the folder the model trained on, or --split all on photos of "
              "lesions it never saw")


def validation_records(records, card, advice=_ELSEWHERE):
    """Of records, those of the card's validation split: by the image ids the card lists, or,
    for an older card, the split re-derived with its seed and checked against its hash. advice
    ends the error raised where records lack them: what the caller's user can do instead."""
    info = card["data_split"]
    if isinstance(info.get("val_image_ids"), list):
        return _validation_by_id(records, info["val_image_ids"], advice)
    # An older card names its validation images by a hash only: re-derive the split and check.
    _, records = data_mod.split_by_lesion(records, val_fraction=info["val_fraction"], seed=info["seed"])
    if data_mod.ids_sha256(r.image_id for r in records) != info["val_image_ids_sha256"]:
        raise DatasetError("this folder does not reproduce the model's validation split (different "
                           f"images), and its card lists no image ids to find them by; {advice}")
    return records


def _validation_by_id(records, val_ids, advice):
    """The records of the card's validation images, found by image id in any folder holding them
    all (the one the model trained on, or the full HAM10000)."""
    wanted = set(val_ids)
    chosen = [r for r in records if r.image_id in wanted]
    if len(chosen) < len(wanted):
        missing = sorted(wanted - {r.image_id for r in chosen})
        raise DatasetError(f"this folder lacks {len(missing)} of the {len(wanted)} images of the "
                           f"model's validation split (first: {missing[:3]}); {advice}")
    return chosen


def _score(classifier, records, x=None):
    """(probabilities as an array in the card's class order, predictions, labels); x, when
    given, holds the records' images already decoded at the classifier's input size."""
    if x is None:
        x = data_mod.decode_all(records, classifier.input_size)
    preds = classifier.predict_arrays(x)
    probs = np.array([[p.probabilities[c] for c in classifier.card["classes"]] for p in preds])
    return probs, preds, data_mod.labels(records)
