"""The card's calibration, fitted on the validation split's logits: the prior-shift offset, the
temperature, the risk thresholds, the decision rule and the validation figures with their
intervals. Training fits it once; `python -m ml recalibrate` fits it again for a model already
trained, with the same function, so that the two cannot drift apart."""

import hashlib
import json

import numpy as np

from . import CLASSES, DEFAULT_MODEL_DIR, MODEL_FILENAME
from . import data as data_mod
from . import metrics as M
from .artifact import (check_model_hash, json_safe, model_version, save_card, sha256_file,
                       timestamp)
from .errors import ModelArtifactError

OFFSET_RULE = ("P(class) = softmax((logits + logit_offset) / temperature), logit_offset = "
               "log(training class frequency) - log(the class's share of the weighted epoch, "
               "images_per_epoch x class_weights): it undoes the class mix that the class weights "
               "and the nevus cap taught the network; the temperature is fitted after it.")

DECISION_RULE = ("predicted class = argmax of log P(class) + class_bias, class_bias = -tau * "
                 "log(training class frequency); tau chosen on validation to maximise the mean "
                 "of accuracy and balanced accuracy. Probabilities are not changed.")

# What turns the network's logits into the probabilities, bands and class a result shows.
CALIBRATION_FIELDS = ("temperature", "logit_offset", "thresholds", "decision")

# Where to find the validation photos when the folder given lacks some.
_WHERE = ("recalibrate with the folder the model trained on, or one that holds all its validation "
          "photos (the full HAM10000)")


def prior_offset(train_counts, images_per_epoch, class_weights) -> np.ndarray:
    """log p(c) - log q(c) per class, p the training split's class frequencies and q the mix the
    loss saw: an epoch's images of the class times its weight. Trained on q, the network's
    softmax estimates P(class | photo) under q; by Bayes' rule adding this constant per class
    to its logits gives the posterior under p, which a temperature cannot: it only sharpens or
    flattens. A class that training lacks gets 0."""
    weighted = np.asarray(images_per_epoch, np.float64) * np.asarray(class_weights, np.float64)
    return np.log(_shares(train_counts)) - np.log(_shares(weighted))


def _shares(values) -> np.ndarray:
    """values / their sum, floored at 1e-6 so that an absent class's log stays finite."""
    values = np.asarray(values, np.float64)
    return np.clip(values / values.sum(), 1e-6, None)


def offset_from_card(card) -> np.ndarray:
    """prior_offset from what the card records of the split and the epoch (the class weights as
    it rounds them), so that training and a later recalibration compute the same offset."""
    split, training = card.get("data_split", {}), card.get("training", {})
    return prior_offset(_card_vector(split, "data_split", "train_counts"),
                        _card_vector(training, "training", "images_per_epoch"),
                        _card_vector(training, "training", "class_weights"))


def _card_vector(section, section_name, key) -> np.ndarray:
    """A per-class mapping of the card, in CLASSES order; refused when absent or malformed."""
    mapping = section.get(key)
    if not (isinstance(mapping, dict)
            and all(isinstance(mapping.get(c), (int, float)) for c in CLASSES)):
        raise ModelArtifactError(f"the model card's {section_name}.{key} does not give a number "
                                 f"for each class; cannot calibrate it")
    return np.array([float(mapping[c]) for c in CLASSES])


def calibrate(logits, y, groups, card) -> dict:
    """The card's calibration fields from validation logits (test-time views averaged), their
    labels y and lesion ids groups (for the intervals); card gives the split and the epoch.
    Every figure comes from probabilities computed as ml.inference computes them, from the
    numbers rounded as the card stores them."""
    offset = np.round(offset_from_card(card), 6)
    temperature = round(M.fit_temperature(np.asarray(logits, np.float64) + offset, y), 6)
    probs = M.softmax(logits, temperature, offset)
    prior = _shares(_card_vector(card["data_split"], "data_split", "train_counts"))
    tau, class_bias = M.fit_decision_bias(probs, y, prior)
    thresholds = M.choose_thresholds(M.malignant_probability(probs), M.is_malignant(y))
    return {
        "temperature": temperature,
        "logit_offset": _as_mapping(offset),
        "logit_offset_rule": OFFSET_RULE,
        "thresholds": thresholds,
        "decision": {"tau": tau, "class_bias": _as_mapping(class_bias), "rule": DECISION_RULE},
        "validation": _validation(logits, probs, y, groups, class_bias, thresholds),
    }


def _as_mapping(values) -> dict:
    """Per-class numbers as the card stores them: by class code, rounded to 6 decimals."""
    return {c: round(float(v), 6) for c, v in zip(CLASSES, values)}


def _validation(logits, probs, y, groups, class_bias, thresholds) -> dict:
    """The card's validation figures; "before" is the network's own softmax (no offset, no
    temperature), "after" the calibrated probabilities the site shows."""
    probs_before = M.softmax(logits)
    mal, m_prob = M.is_malignant(y), M.malignant_probability(probs)
    val = M.classification_metrics(probs, y, class_bias)
    val["without_decision_bias"] = {k: v for k, v in M.classification_metrics(probs, y).items()
                                    if k in ("accuracy", "balanced_accuracy", "per_class_recall")}
    val.update({
        "ece_before": round(M.ece(probs_before, y), 4), "ece_after": val.pop("ece"),
        "nll_before": round(M.nll(probs_before, y), 4), "nll_after": val.pop("nll"),
        "at_thresholds": M.threshold_metrics(m_prob, mal, thresholds),
        "roc_curve": M.roc_points(m_prob, mal) if 0 < mal.sum() < len(mal) else [],
        "intervals": M.bootstrap_intervals(probs, y, groups, class_bias),
    })
    return val


def calibration_hash(card: dict) -> str:
    """A short hash of the card's CALIBRATION_FIELDS as the card stores them (JSON, keys sorted):
    two cards that band or weigh a photo differently have different hashes."""
    fields = json_safe({key: card.get(key) for key in CALIBRATION_FIELDS})
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def recalibrated_version(when: str, card: dict) -> str:
    """A recalibrated card's version: the date of when, the preset, the model file's hash prefix
    and "c" + its calibration_hash, e.g. 2026.12.07-full-2e40fee7-c5d1a9e0. Results are told
    apart by version, and a card put back (git checkout) then recalibrated again the same day on
    other photos must not reuse the version the first recalibration gave its results."""
    model = model_version(when, card["preset"], card["model_sha256"])
    return f"{model}-c{calibration_hash(card)}"


def _new_version(version: str, previous: str) -> str:
    """version, or, when that is the one being replaced (recalibrated twice the same day to the
    same calibration), it with "-r2", "-r3"...: a new card never takes the version it replaces."""
    if not previous.startswith(version):
        return version
    suffix = previous[len(version):]
    n = int(suffix[2:]) + 1 if suffix.startswith("-r") and suffix[2:].isdigit() else 2
    return f"{version}-r{n}"


def recalibrate(*, data_dir, model_dir=DEFAULT_MODEL_DIR) -> dict:
    """Fit the calibration of the model in model_dir again on its validation photos, found in
    data_dir by its card's image ids, and save the card atomically with a new version and the
    time of recalibration; the model file and the rest of the card stay as they are. Returns
    the new card."""
    from .evaluation import validation_records
    from .inference import load_classifier

    classifier = load_classifier(model_dir)
    card = dict(classifier.card)
    records = validation_records(data_mod.load_records(data_dir), card, advice=_WHERE)
    logits = classifier.logits(data_mod.decode_all(records, classifier.input_size))
    card.update(calibrate(logits, data_mod.labels(records), [r.lesion_id for r in records], card))
    now = timestamp()
    card["recalibrated"] = {"at": now, "previous_version": card["version"]}
    card["version"] = _new_version(recalibrated_version(now, card),
                                   card["recalibrated"]["previous_version"])
    # A model trained into the folder meanwhile must not be given this card.
    model_path = classifier.model_dir / MODEL_FILENAME
    check_model_hash(card, sha256_file(model_path), model_path)
    save_card(card, classifier.model_dir)
    return card
