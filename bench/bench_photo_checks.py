"""Photo checks benchmark: python bench/bench_photo_checks.py [--data DIR] [--model DIR] [--json]

Measures what ml.quality's limits are made of, and what they catch:
- the brightness, sharpness and colourfulness of every HAM10000 photo in DIR: the percentiles
  the limits are taken from, and the share of the photos each check flags (its false alarms on
  photos like those the model learned from);
- the shipped model on its validation split (found by the card's image ids), as it is and made darker,
  brighter, blurrier or black and white: for each, the share of photos flagged, the malignant
  AUC, the balanced accuracy, the mean malignant probability of the malignant photos, and the
  malignant sensitivity at the medium threshold (the share of malignant photos rated medium or
  high).
It takes a few minutes: every variant decodes and classifies about 1,500 photos.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PERCENTILES = (0.5, 1, 5, 50, 95, 99, 99.5)

# name -> what is done to a photo (HAM10000's are 600x450)
VARIANTS = {
    "as is": lambda im: im,
    "brightness 0.7x": lambda im: ImageEnhance.Brightness(im).enhance(0.7),
    "brightness 0.5x": lambda im: ImageEnhance.Brightness(im).enhance(0.5),
    "brightness 1.3x": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
    "brightness 1.6x": lambda im: ImageEnhance.Brightness(im).enhance(1.6),
    "blur 2 px": lambda im: im.filter(ImageFilter.GaussianBlur(2)),
    "blur 3 px": lambda im: im.filter(ImageFilter.GaussianBlur(3)),
    "blur 4 px": lambda im: im.filter(ImageFilter.GaussianBlur(4)),
    "black and white": lambda im: im.convert("L").convert("RGB"),
}


def dataset_figures(records) -> dict:
    """Percentiles of the three measures over the photos, and the share each check flags."""
    from ml import quality
    from ml.preprocessing import to_rgb

    measures = [quality.measure(to_rgb(r.path)) for r in records]
    brightness = np.array([m.brightness for m in measures])
    sharpness = np.array([m.sharpness for m in measures])
    colourfulness = np.array([m.colourfulness for m in measures])
    flagged = [quality.issues_of(m) for m in measures]
    return {
        "n_images": len(records),
        "brightness_percentiles": dict(zip(map(str, PERCENTILES), np.percentile(brightness, PERCENTILES).round(2).tolist())),
        "sharpness_percentiles": dict(zip(map(str, PERCENTILES), np.percentile(sharpness, PERCENTILES).round(2).tolist())),
        "colourfulness_percentiles": dict(zip(map(str, PERCENTILES),
                                              np.percentile(colourfulness, PERCENTILES).round(2).tolist())),
        "flagged_share": {code: round(float(np.mean([code in f for f in flagged])), 4) for code in quality.ISSUES}
        | {"any": round(float(np.mean([bool(f) for f in flagged])), 4)},
    }


def variant_figures(classifier, images, y) -> dict:
    from ml import metrics as M
    from ml import quality

    x = np.stack([classifier.preprocess(im) for im in images])
    predictions = classifier.predict_arrays(x)
    malignant_p = np.array([p.malignant_probability for p in predictions])
    shown = np.array([classifier.card["classes"].index(p.predicted_class) for p in predictions])
    mal = M.is_malignant(y)
    rated = np.array([p.risk != "low" for p in predictions])
    return {
        "flagged_share": round(float(np.mean([bool(quality.photo_issues(im)) for im in images])), 4),
        "malignant_auc": round(M.malignant_auc(malignant_p, mal), 4),
        "balanced_accuracy": round(M.balanced_accuracy(y, shown), 4),
        "mean_malignant_probability_of_malignant": round(float(malignant_p[mal].mean()), 4),
        "malignant_sensitivity_at_medium": round(float(rated[mal].mean()), 4),
    }


# What to do where --data lacks some of the model's validation photos (ending the DatasetError).
_WHERE = ("give --data a HAM10000 folder that holds the model's validation photos: the folder it "
          "trained on, or the full HAM10000")


def main(argv=None) -> int:
    from ml import DEFAULT_MODEL_DIR
    from ml.errors import MLError

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ham10000"),
                        help="a HAM10000 folder holding the model's validation photos")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    try:
        run(args)
    except MLError as exc:  # an unusable folder or model: say so, without a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run(args) -> None:
    from ml import data as data_mod
    from ml.evaluation import validation_records
    from ml.inference import load_classifier
    from ml.preprocessing import to_rgb

    records = data_mod.load_records(args.data)
    classifier = load_classifier(args.model)
    val = validation_records(records, classifier.card, advice=_WHERE)  # by the card's ids, as evaluate --split val
    y = data_mod.labels(val)
    originals = [to_rgb(r.path) for r in val]

    result = {"dataset": dataset_figures(records), "model_version": classifier.version,
              "validation_variants": {name: variant_figures(classifier, [change(im) for im in originals], y)
                                      for name, change in VARIANTS.items()}}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_text(result)


def print_text(result):
    d = result["dataset"]
    print(f"HAM10000, {d['n_images']} photos")
    print("  brightness percentiles:", d["brightness_percentiles"])
    print("  sharpness percentiles: ", d["sharpness_percentiles"])
    print("  colourfulness percentiles:", d["colourfulness_percentiles"])
    print("  flagged:", d["flagged_share"])
    print(f"model {result['model_version']}, validation split, photos changed:")
    print(f"  {'variant':<16} {'flagged':>8} {'AUC':>6} {'bal.acc':>8} {'mean P(mal) of mal':>19} {'mal. sens. at medium':>21}")
    for name, v in result["validation_variants"].items():
        print(f"  {name:<16} {v['flagged_share']:>8.3f} {v['malignant_auc']:>6.3f} {v['balanced_accuracy']:>8.3f}"
              f" {v['mean_malignant_probability_of_malignant']:>19.3f} {v['malignant_sensitivity_at_medium']:>21.3f}")


if __name__ == "__main__":
    sys.exit(main())
