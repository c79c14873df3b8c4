"""Metrics, calibration and risk thresholds (numpy / scipy / scikit-learn; no TensorFlow)."""

import math

import numpy as np

from . import CLASSES, MALIGNANT

MALIGNANT_IDX = np.array([CLASSES.index(c) for c in MALIGNANT])


def softmax(logits, temperature=1.0, offset=0.0):
    """softmax((logits + offset) / temperature): offset, per class, is the card's prior-shift
    correction (ml.calibration), applied before the temperature that was fitted after it."""
    z = (np.asarray(logits, dtype=np.float64) + offset) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(probs, y):
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))))


def ece(probs, y, n_bins=15):
    """Expected calibration error of the top-class confidence (equal-width bins)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            total += in_bin.mean() * abs(conf[in_bin].mean() - correct[in_bin].mean())
    return float(total)


def fit_temperature(logits, y) -> float:
    """Temperature minimising the NLL of softmax(logits / T) (searched on log T)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(lambda lt: nll(softmax(logits, np.exp(lt)), y), bounds=(-3.0, 3.0),
                          method="bounded", options={"xatol": 1e-4})
    return float(np.exp(res.x))


def malignant_probability(probs):
    return probs[:, MALIGNANT_IDX].sum(axis=1)


def is_malignant(y):
    return np.isin(y, MALIGNANT_IDX)


def malignant_auc(m_prob, mal) -> float:
    """ROC AUC of malignant vs benign; nan when the data hold only one of the two."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(mal, m_prob)) if 0 < mal.sum() < len(mal) else float("nan")


def sens_spec(m_prob, mal, threshold):
    pred = m_prob >= threshold
    sens = float(pred[mal].mean()) if mal.any() else float("nan")
    spec = float((~pred[~mal]).mean()) if (~mal).any() else float("nan")
    return sens, spec


# The risk bands' rule (issue #3), also written into each model card's "threshold_rule".
MEDIUM_MIN_SENSITIVITY = 0.95
HIGH_MIN_SPECIFICITY = 0.90
THRESHOLD_RULE = (f"medium: highest threshold keeping malignant sensitivity >= {MEDIUM_MIN_SENSITIVITY:.2f} "
                  f"on validation; high: lowest threshold with specificity >= {HIGH_MIN_SPECIFICITY:.2f}")


def choose_thresholds(m_prob, mal, *, min_sensitivity=MEDIUM_MIN_SENSITIVITY,
                      min_specificity=HIGH_MIN_SPECIFICITY):
    """{"medium": t, "high": t} chosen on validation data.

    medium: the highest threshold whose malignant sensitivity is still >= min_sensitivity.
    high: the lowest threshold whose specificity (benign lesions below it) is >= min_specificity.
    """
    mal_scores = np.sort(m_prob[mal])[::-1]
    if len(mal_scores):
        k = int(np.ceil(min_sensitivity * len(mal_scores)))  # need >= k malignant at/above t
        medium = float(mal_scores[max(k, 1) - 1])
    else:
        medium = 0.5
    ben_scores = np.sort(m_prob[~mal])
    if len(ben_scores):
        k = int(np.ceil(min_specificity * len(ben_scores)))  # need >= k benign strictly below t
        high = float(np.nextafter(ben_scores[max(k, 1) - 1], np.inf))
    else:
        high = 0.5
    # Rounded for the card, with a margin, so that the scores the thresholds were chosen to keep
    # on their side stay there on the site too, whose arithmetic (BatchNorm folded into the
    # convolutions, float32) moves a probability by up to about 1e-7.
    medium = max(0.0, _round_down(medium - THRESHOLD_MARGIN))
    high = max(_round_up(high + THRESHOLD_MARGIN), medium)
    return {"medium": medium, "high": high}


THRESHOLD_MARGIN = 1e-6


def _round_down(value: float) -> float:
    """value rounded to 6 decimals, never above it (x * 1e6 can round up to a whole number)."""
    rounded = round(math.floor(value * 1e6) / 1e6, 6)
    while rounded > value:
        rounded = round(rounded - 1e-6, 6)
    return rounded


def _round_up(value: float) -> float:
    """value rounded to 6 decimals, never below it."""
    rounded = round(math.ceil(value * 1e6) / 1e6, 6)
    while rounded < value:
        rounded = round(rounded + 1e-6, 6)
    return rounded


def risk_band(malignant_probability: float, thresholds: dict) -> str:
    if malignant_probability >= thresholds["high"]:
        return "high"
    if malignant_probability >= thresholds["medium"]:
        return "medium"
    return "low"


def roc_points(m_prob, mal, max_points=50):
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(mal.astype(int), m_prob, drop_intermediate=True)
    if len(fpr) > max_points:
        idx = np.unique(np.round(np.linspace(0, len(fpr) - 1, max_points)).astype(int))
        fpr, tpr, thr = fpr[idx], tpr[idx], thr[idx]
    thr = np.minimum(thr, 1.0)  # sklearn puts +inf first
    return [{"fpr": round(float(f), 4), "tpr": round(float(t), 4), "threshold": round(float(h), 6)}
            for f, t, h in zip(fpr, tpr, thr)]


def decide(probs, class_bias=None) -> np.ndarray:
    """The class shown for each row: argmax of log P(class) + class_bias (plain argmax when the
    bias is None or zero). The bias only moves the decision; the probabilities stay calibrated."""
    if class_bias is None:
        return np.asarray(probs).argmax(axis=1)
    return (np.log(np.clip(probs, 1e-12, 1.0)) + np.asarray(class_bias)).argmax(axis=1)


TAU_GRID = np.round(np.arange(-1.0, 1.5001, 0.05), 2)


def balanced_accuracy(y, pred) -> float:
    """The mean recall of the classes y holds: scikit-learn's balanced_accuracy_score, the same
    float, without the UserWarning it gives on stderr when pred shows a class y lacks (a folder
    of a few classes; the site shows all seven)."""
    y, pred = np.asarray(y), np.asarray(pred)
    classes, counts = np.unique(y, return_counts=True)
    hits = np.array([np.count_nonzero(pred[y == c] == c) for c in classes])
    return float(np.mean(hits / counts))  # as scikit-learn: recalls as float64, then their mean


def fit_decision_bias(probs, y, prior) -> tuple[float, np.ndarray]:
    """(tau, class_bias) with class_bias = -tau * log(prior): tau 0 is the plain argmax, the
    most accurate rule for calibrated probabilities; tau 1 divides out the class frequencies,
    which favours balanced accuracy. tau is chosen on validation data to maximise the mean of
    accuracy and balanced accuracy, so neither is given up for the other."""
    log_prior = np.log(np.clip(np.asarray(prior, dtype=np.float64), 1e-6, None))
    best = None
    for tau in TAU_GRID:
        pred = decide(probs, -tau * log_prior)
        score = ((pred == y).mean() + balanced_accuracy(y, pred)) / 2
        if best is None or score > best[0] + 1e-9 or (abs(score - best[0]) <= 1e-9 and abs(tau) < abs(best[1])):
            best = (score, float(tau))
    tau = best[1]
    return tau, -tau * log_prior


def classification_metrics(probs, y, class_bias=None) -> dict:
    """The metrics reported in the card and by `python -m ml evaluate`."""
    from sklearn.metrics import confusion_matrix

    pred = decide(probs, class_bias)
    mal = is_malignant(y)
    m_prob = malignant_probability(probs)
    # every class, None (null) for one the data lack: a reader can look any class up
    recall = {name: round(float((pred[y == c] == c).mean()), 4) if (y == c).any() else None
              for c, name in enumerate(CLASSES)}
    auc = malignant_auc(m_prob, mal)
    return {
        "n_images": int(len(y)),
        "accuracy": round(float((pred == y).mean()), 4),
        "balanced_accuracy": round(balanced_accuracy(y, pred), 4),
        "malignant_auc": round(auc, 4),
        "per_class_recall": recall,
        "confusion_matrix": {"labels": list(CLASSES),
                             "matrix": confusion_matrix(y, pred, labels=range(len(CLASSES))).tolist()},
        "ece": round(ece(probs, y), 4),
        "nll": round(nll(probs, y), 4),
    }


BOOTSTRAP_FIGURES = ("accuracy", "balanced_accuracy", "malignant_auc")


def lesion_resample_weights(groups, *, resamples=1000, seed=0) -> np.ndarray:
    """(resamples, images) weights of a bootstrap over whole lesions (groups): each image counts
    as often as its lesion was drawn. The images of one lesion are not independent, so
    resampling images would make the intervals too narrow."""
    _, group_of = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = int(group_of.max()) + 1
    drawn = np.random.default_rng(seed).multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=resamples)
    return drawn[:, group_of].astype(np.float64)


def resampled_figures(probs, y, weights, class_bias=None) -> dict:
    """Accuracy, balanced accuracy (of the class shown) and malignant AUC under each row of
    weights, as arrays; balanced accuracy averages the classes that each resample holds."""
    y = np.asarray(y)
    correct = (decide(probs, class_bias) == y).astype(np.float64)
    recalls = []
    for c in np.unique(y):
        in_class = (y == c).astype(np.float64)
        n_c = weights @ in_class
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append(np.where(n_c > 0, weights @ (correct * in_class) / n_c, np.nan))
    return {"accuracy": weights @ correct / weights.sum(axis=1),
            "balanced_accuracy": np.nanmean(np.stack(recalls), axis=0),
            "malignant_auc": _weighted_aucs(malignant_probability(probs), is_malignant(y), weights)}


def _percentile_interval(values, level):
    if np.isnan(values).all():
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return [round(float(low), 4), round(float(high), 4)]


def bootstrap_intervals(probs, y, groups, class_bias=None, *, resamples=1000, level=0.95, seed=0) -> dict:
    """Percentile intervals of accuracy, balanced accuracy and malignant AUC, from resampling
    whole lesions (groups) with replacement."""
    if len(y) == 0:
        return {}
    figures = resampled_figures(probs, y, lesion_resample_weights(groups, resamples=resamples, seed=seed),
                                class_bias)
    out = {key: _percentile_interval(figures[key], level) for key in BOOTSTRAP_FIGURES}
    return {**out, "level": level, "resamples": resamples, "unit": "lesion"}


def paired_differences(probs_a, probs_b, y, groups, bias_a=None, bias_b=None, *, resamples=2000,
                       level=0.95, seed=0) -> dict:
    """How far model B's figures are from model A's on the same images: the difference (B - A),
    its interval and the share of lesion resamples in which B does better. Both models are
    scored on the same resamples, so what the images share cancels out, and a difference can
    be told from noise that the two separate intervals would hide."""
    weights = lesion_resample_weights(groups, resamples=resamples, seed=seed)
    a, b = resampled_figures(probs_a, y, weights, bias_a), resampled_figures(probs_b, y, weights, bias_b)
    point_a, point_b = classification_metrics(probs_a, y, bias_a), classification_metrics(probs_b, y, bias_b)
    out = {}
    for key in BOOTSTRAP_FIGURES:
        diff = b[key] - a[key]
        defined = diff[~np.isnan(diff)]  # an AUC is undefined in a resample with one side only
        out[key] = {"a": point_a[key], "b": point_b[key], "difference": round(point_b[key] - point_a[key], 4),
                    "interval": _percentile_interval(diff, level),
                    "b_better_share": round(float(np.mean(defined > 0)), 3) if len(defined) else None}
    return {**out, "level": level, "resamples": resamples, "unit": "lesion"}


def _weighted_aucs(scores, positive, weights) -> np.ndarray:
    """ROC AUC for each row of sample weights (ties count one half), all rows at once: the
    Mann-Whitney sum over blocks of tied scores. nan where a row weighs one side only."""
    order = np.argsort(scores, kind="stable")
    _, starts = np.unique(scores[order], return_index=True)
    w = weights[:, order]
    pos = np.add.reduceat(w * positive[order], starts, axis=1)  # (rows, blocks of tied scores)
    neg = np.add.reduceat(w * ~positive[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each block
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / pairs, np.nan)


def threshold_metrics(m_prob, mal, thresholds) -> dict:
    out = {}
    for band in ("medium", "high"):
        sens, spec = sens_spec(m_prob, mal, thresholds[band])
        out[band] = {"threshold": thresholds[band], "sensitivity": round(sens, 4),
                     "specificity": round(spec, 4)}
    return out
