"""ml.metrics: calibration, thresholds, risk bands (numpy only)."""

import warnings

import numpy as np
import pytest

from ml import CLASSES, MALIGNANT
from ml import metrics as M


def _overconfident_logits(n, seed):
    """Logits of a 'model' that is right ~70% of the time but sure of itself."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    logits = rng.normal(0, 1, (n, len(CLASSES)))
    logits[np.arange(n), y] += 1.5
    return logits * 4.0, y


def test_it_lowers_held_out_nll_with_temperature_scaling():
    val_logits, val_y = _overconfident_logits(600, seed=1)
    test_logits, test_y = _overconfident_logits(600, seed=2)
    t = M.fit_temperature(val_logits, val_y)
    assert t > 1.5
    before = M.nll(M.softmax(test_logits), test_y)
    after = M.nll(M.softmax(test_logits, t), test_y)
    assert after < before * 0.8
    assert M.ece(M.softmax(test_logits, t), test_y) < M.ece(M.softmax(test_logits), test_y)
    # temperature never changes the decision
    assert np.array_equal(M.softmax(test_logits, t).argmax(1), test_logits.argmax(1))


@pytest.mark.parametrize("p, band", [(0.0, "low"), (0.099, "low"), (0.1, "medium"), (0.39, "medium"),
                                     (0.4, "high"), (1.0, "high")])
def test_it_maps_malignant_probability_to_risk_bands(p, band):
    assert M.risk_band(p, {"medium": 0.1, "high": 0.4}) == band


def test_it_chooses_thresholds_for_sensitivity_and_specificity():
    rng = np.random.default_rng(0)
    mal = np.r_[np.ones(200, bool), np.zeros(800, bool)]
    score = np.where(mal, rng.beta(5, 2, 1000), rng.beta(2, 5, 1000))
    t = M.choose_thresholds(score, mal)
    assert t["medium"] <= t["high"]
    sens, _ = M.sens_spec(score, mal, t["medium"])
    assert sens >= 0.95
    assert M.sens_spec(score, mal, t["medium"] + 1e-3)[0] < 0.95  # the highest such threshold
    _, spec = M.sens_spec(score, mal, t["high"])
    assert spec >= 0.90
    assert M.sens_spec(score, mal, t["high"] - 1e-3)[1] < 0.90  # the lowest such threshold


def test_it_keeps_the_chosen_scores_on_their_side_of_the_rounded_thresholds():
    # A score just below a multiple of 1e-6: rounding it to 6 decimals would go past it.
    tricky = float(np.nextafter(0.295264, 0))
    mal_scores = np.r_[np.linspace(0.9, 0.4, 18), tricky, 0.1]  # 19 of 20 must stay >= medium
    ben_scores = np.r_[np.linspace(0.0, 0.2, 17), np.nextafter(0.7, 1), 0.8, 0.9]  # 18 of 20 < high
    score = np.r_[mal_scores, ben_scores]
    mal = np.r_[np.ones(20, bool), np.zeros(20, bool)]
    t = M.choose_thresholds(score, mal)
    assert t["medium"] <= tricky - 1e-6 and M.sens_spec(score, mal, t["medium"])[0] == 0.95
    assert t["high"] >= 0.7 + 1e-6 and M.sens_spec(score, mal, t["high"])[1] == 0.90
    assert t["medium"] == round(t["medium"], 6) and t["high"] == round(t["high"], 6)


def test_it_sums_malignant_classes():
    probs = np.full((1, len(CLASSES)), 1 / len(CLASSES))
    assert M.malignant_probability(probs)[0] == pytest.approx(len(MALIGNANT) / len(CLASSES))


def test_it_reports_classification_metrics_and_a_short_roc_curve():
    rng = np.random.default_rng(3)
    y = rng.integers(0, len(CLASSES), 2000)
    logits = rng.normal(0, 1, (2000, len(CLASSES)))
    logits[np.arange(2000), y] += 2
    probs = M.softmax(logits)
    m = M.classification_metrics(probs, y)
    assert m["n_images"] == 2000 and 0.5 < m["accuracy"] < 1 and 0.5 < m["balanced_accuracy"] < 1
    assert set(m["per_class_recall"]) == set(CLASSES)
    assert np.array(m["confusion_matrix"]["matrix"]).sum() == 2000
    roc = M.roc_points(M.malignant_probability(probs), M.is_malignant(y))
    assert 2 <= len(roc) <= 50
    assert roc[0]["fpr"] == 0 and roc[-1]["tpr"] == 1


def test_it_names_every_class_in_the_recall_with_null_for_one_the_data_lack():
    y = np.array([1, 1, 2, 2])  # bcc and bkl only
    probs = np.eye(len(CLASSES))[[1, 2, 2, 2]]
    recall = M.classification_metrics(probs, y)["per_class_recall"]
    assert list(recall) == list(CLASSES)
    assert recall["bcc"] == 0.5 and recall["bkl"] == 1.0 and recall["mel"] is None


def _prior_free_probs(n, prior, seed):
    """Labels drawn with `prior`, and the probabilities of a 'model' trained class-balanced:
    it ignores the prior, so it over-calls the rare classes (like a class-weighted CNN)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(CLASSES), n, p=prior)
    logits = rng.normal(0, 1, (n, len(CLASSES)))
    logits[np.arange(n), y] += 1.2
    return M.softmax(logits), y


def _mean_of_accuracies(probs, y, bias):
    from sklearn.metrics import balanced_accuracy_score

    pred = M.decide(probs, bias)
    return ((pred == y).mean() + balanced_accuracy_score(y, pred)) / 2, (pred == y).mean()


def test_the_decision_bias_moves_the_shown_class_but_zero_bias_is_the_plain_argmax():
    probs = M.softmax(np.random.default_rng(0).normal(0, 1, (50, len(CLASSES))))
    assert np.array_equal(M.decide(probs), probs.argmax(1))
    assert np.array_equal(M.decide(probs, np.zeros(len(CLASSES))), probs.argmax(1))
    bias = np.zeros(len(CLASSES))
    bias[CLASSES.index("nv")] = 50.0
    assert (M.decide(probs, bias) == CLASSES.index("nv")).all()


def test_the_decision_bias_fitted_on_validation_restores_the_prior_a_balanced_model_ignored():
    prior = np.array([0.03, 0.05, 0.11, 0.01, 0.11, 0.67, 0.02])
    val_probs, val_y = _prior_free_probs(3000, prior, seed=1)
    test_probs, test_y = _prior_free_probs(3000, prior, seed=2)
    tau, bias = M.fit_decision_bias(val_probs, val_y, prior)
    assert tau < 0  # lean back towards the frequent classes
    assert np.allclose(bias, -tau * np.log(prior))
    fitted_score, fitted_acc = _mean_of_accuracies(test_probs, test_y, bias)
    plain_score, plain_acc = _mean_of_accuracies(test_probs, test_y, None)
    assert fitted_acc > plain_acc + 0.05
    assert fitted_score > plain_score
    # the reported metrics use the same rule
    assert M.classification_metrics(test_probs, test_y, bias)["accuracy"] == pytest.approx(fitted_acc, abs=1e-4)


def _scored_lesions(n_lesions, seed):
    """Probabilities and labels of one image per lesion, right ~60% of the time."""
    logits, y = _overconfident_logits(n_lesions, seed)
    return M.softmax(logits / 4.0), y


def test_it_brackets_the_figures_with_lesion_bootstrap_intervals():
    probs, y = _scored_lesions(400, seed=3)
    point = M.classification_metrics(probs, y)
    intervals = M.bootstrap_intervals(probs, y, np.arange(len(y)))
    for key in ("accuracy", "balanced_accuracy", "malignant_auc"):
        low, high = intervals[key]
        assert low < point[key] < high, key
        assert 0.02 < high - low < 0.2, key
    assert intervals["level"] == 0.95 and intervals["unit"] == "lesion"
    # four times the lesions: about half as wide
    more_probs, more_y = _scored_lesions(1600, seed=4)
    wide = np.diff(intervals["malignant_auc"])[0]
    narrow = np.diff(M.bootstrap_intervals(more_probs, more_y, np.arange(len(more_y)))["malignant_auc"])[0]
    assert 0.3 < narrow / wide < 0.7


def test_it_resamples_lesions_not_images():
    """Five photos of each lesion are no more evidence than one: the intervals stay as wide."""
    probs, y = _scored_lesions(400, seed=5)
    once = M.bootstrap_intervals(probs, y, np.arange(len(y)))
    lesions = np.repeat(np.arange(len(y)), 5)
    five = M.bootstrap_intervals(np.repeat(probs, 5, axis=0), np.repeat(y, 5), lesions)
    as_if_independent = M.bootstrap_intervals(np.repeat(probs, 5, axis=0), np.repeat(y, 5), np.arange(5 * len(y)))
    for key in ("accuracy", "balanced_accuracy", "malignant_auc"):
        width = np.diff(once[key])[0]
        assert np.diff(five[key])[0] == pytest.approx(width, rel=0.25), key
        assert np.diff(as_if_independent[key])[0] < 0.6 * width, key


def test_it_computes_the_bootstrap_auc_as_scikit_learn_does_with_weights_and_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(6)
    scores = np.round(rng.random(300), 1)  # many ties
    positive = rng.random(300) < scores
    weights = rng.integers(0, 3, (4, 300)).astype(float)
    expected = [roc_auc_score(positive, scores, sample_weight=w) for w in weights]
    assert M._weighted_aucs(scores, positive, weights) == pytest.approx(expected, abs=1e-12)


def test_it_tells_a_small_real_difference_from_noise_by_pairing_the_resamples():
    probs_a, y = _scored_lesions(400, seed=7)
    lesions = np.arange(len(y))
    wrong = np.flatnonzero(probs_a.argmax(1) != y)[:10]
    probs_b = probs_a.copy()
    probs_b[wrong] = np.eye(len(CLASSES))[y[wrong]] * 0.9 + 0.1 / len(CLASSES)  # B gets 10 more right
    result = M.paired_differences(probs_a, probs_b, y, lesions)
    accuracy = result["accuracy"]
    assert accuracy["difference"] == pytest.approx(10 / 400, abs=1e-4)
    assert 0 < accuracy["interval"][0] < accuracy["difference"] < accuracy["interval"][1]
    assert accuracy["b_better_share"] > 0.99
    # the two models' own intervals overlap: apart, they could not tell this difference
    a_low, a_high = M.bootstrap_intervals(probs_a, y, lesions)["accuracy"]
    b_low, b_high = M.bootstrap_intervals(probs_b, y, lesions)["accuracy"]
    assert b_low < a_high
    # a model against itself: no difference, in any resample
    same = M.paired_differences(probs_a, probs_a, y, lesions)
    for key in M.BOOTSTRAP_FIGURES:
        assert same[key]["difference"] == 0 and same[key]["interval"] == [0, 0] and same[key]["b_better_share"] == 0


@pytest.mark.parametrize("labels", [range(len(CLASSES)), [0, 5], [5]])
def test_balanced_accuracy_is_scikit_learns_without_its_warning(labels):
    # a folder lacking classes made scikit-learn warn on stderr ("y_pred contains classes not in
    # y_true"); the figure must stay the very same float
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(len(labels))
    y = rng.choice(list(labels), 300)
    probs = M.softmax(rng.normal(0, 1, (300, len(CLASSES))))
    pred = M.decide(probs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = balanced_accuracy_score(y, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert M.balanced_accuracy(y, pred) == expected
        assert M.classification_metrics(probs, y)["balanced_accuracy"] == round(expected, 4)
        M.fit_decision_bias(probs, y, np.full(len(CLASSES), 1 / len(CLASSES)))
