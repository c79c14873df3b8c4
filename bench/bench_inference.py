"""Inference benchmark: python bench/bench_inference.py [--model DIR] [--runs N]

Prints, as the median of N runs after a warm-up: TensorFlow import time (once, cold), model load
time, single-image latency (bytes of a JPEG in, Prediction out), batch throughput (64 images,
preprocessed arrays in), Grad-CAM explain latency (PNG out), and the peak RSS of this process
holding the model. Timings are wall-clock on whatever else the machine is doing.
"""

import argparse
import io
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def timed(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples), samples


def main(argv=None):
    from ml import CLASSES, DEFAULT_MODEL_DIR

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)

    t = time.perf_counter()
    import tensorflow  # noqa: F401  (timed apart: every worker pays it once)

    tf_import = time.perf_counter() - t

    from ml.inference import load_classifier
    from ml.synthetic import draw_lesion

    load_s, _ = timed(lambda: load_classifier(args.model), max(5, args.runs // 2), warmup=1)
    clf = load_classifier(args.model)
    images = []
    for i in range(64):
        buf = io.BytesIO()
        draw_lesion(CLASSES[i % len(CLASSES)], size=(600, 450), seed=i).save(buf, format="JPEG", quality=90)
        images.append(buf.getvalue())
    single_s, _ = timed(lambda: clf.predict(images[0]), args.runs * 3, warmup=3)
    arrays = __import__("numpy").stack([clf.preprocess(b) for b in images])
    batch_s, _ = timed(lambda: clf.predict_arrays(arrays), args.runs, warmup=2)
    batch_bytes_s, _ = timed(lambda: clf.predict_batch(images), args.runs, warmup=1)
    explain_s, _ = timed(lambda: clf.explain(images[1]), args.runs, warmup=2)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    result = {
        "model_version": clf.version,
        "model_file_mb": round(clf.card["model_size_bytes"] / 1e6, 2),
        "input_size": clf.card["input_size"],
        "tta_views": clf.card.get("tta_views", 1),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "tensorflow_import_s": round(tf_import, 3),
        "model_load_s": round(load_s, 3),
        "single_image_ms": round(single_s * 1000, 2),
        "batch64_images_per_s": round(64 / batch_s, 1),
        "batch64_from_jpeg_bytes_images_per_s": round(64 / batch_bytes_s, 1),
        "explain_ms": round(explain_s * 1000, 1),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "runs": args.runs,
    }
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
