"""Inference benchmark: python bench/bench_inference.py [--model DIR] [--runs N]

Prints, as medians of N runs after a warm-up:
- TensorFlow import time and model load time (load_classifier: card + sha256 check, Keras load,
  first trace), each measured in N fresh processes (what a new worker pays once);
- single-image latency (600x450 JPEG bytes in, Prediction out: decode, resize, the card's TTA views);
- batch throughput (64 preprocessed images per call, and 64 JPEGs via predict_batch), and the
  same 64 with the network called once for all of them (what ml.inference.NETWORK_CHUNK splits);
- Grad-CAM explain latency (Prediction + overlay PNG out), for the 600x450 JPEG and for a
  12-megapixel phone JPEG (4032x3024, what the site's worker gets from a phone);
- peak RSS of this process, which loaded the model once and ran all of the above;
- a baseline measured in the same run: the network alone, one view, on arrays already
  preprocessed (one image, and 64), and each figure as a ratio to it. The ratios hold steadier
  than the figures on a shared, noisy machine: compare those between runs;
- the network as stored (BatchNormalization not folded into the convolutions, see
  ml.model.fold_batchnorm), one view, 64 images, as a ratio to the baseline.
The 12-megapixel explain and the stored network are measured after the peak RSS, so as not to
count the memory of a second network or of drawing the large synthetic photo.
Timings are wall-clock on whatever else the machine is doing.
"""

import argparse
import io
import json
import os
import platform
import resource
import statistics
import subprocess
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

    cold = [_cold_load(args.model) for _ in range(max(5, args.runs // 2))]
    tf_import = statistics.median(c[0] for c in cold)
    load_s = statistics.median(c[1] for c in cold)

    from ml.inference import load_classifier, make_logits_fn
    from ml.synthetic import draw_lesion

    clf = load_classifier(args.model)
    images = []
    for i in range(64):
        buf = io.BytesIO()
        draw_lesion(CLASSES[i % len(CLASSES)], size=(600, 450), seed=i).save(buf, format="JPEG", quality=90)
        images.append(buf.getvalue())
    single_s, _ = timed(lambda: clf.predict(images[0]), args.runs * 3, warmup=3)
    arrays = __import__("numpy").stack([clf.preprocess(b) for b in images])
    batch_s, _ = timed(lambda: clf.predict_arrays(arrays), args.runs, warmup=2)
    one_call_s = _one_network_call(clf, arrays, args.runs)
    batch_bytes_s, _ = timed(lambda: clf.predict_batch(images), args.runs, warmup=1)
    explain_s, _ = timed(lambda: clf.explain(images[1]), args.runs, warmup=2)
    network = make_logits_fn(clf.model, arrays.shape[1:3], 1)
    base_single_s, _ = timed(lambda: network(arrays[:1]).numpy(), args.runs * 3, warmup=3)
    base_batch_s, _ = timed(lambda: network(arrays).numpy(), args.runs, warmup=2)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # After the peak RSS: drawing a 12-megapixel synthetic photo takes memory a worker never does.
    buf = io.BytesIO()
    draw_lesion("mel", size=(4032, 3024), seed=99).save(buf, format="JPEG", quality=90)
    phone_jpeg = buf.getvalue()
    explain_phone_s, _ = timed(lambda: clf.explain(phone_jpeg), args.runs, warmup=1)
    stored = make_logits_fn(_stored_network(args.model), arrays.shape[1:3], 1)
    stored_batch_s, _ = timed(lambda: stored(arrays).numpy(), args.runs, warmup=2)

    result = {
        "model_version": clf.version,
        "model_file_mb": round(clf.card["model_size_bytes"] / 1e6, 2),
        "input_size": clf.card["input_size"],
        "tta_views": clf.card.get("tta_views", 1),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "tensorflow_import_s (fresh process)": round(tf_import, 3),
        "model_load_s (fresh process, after TF import)": round(load_s, 3),
        "single_image_ms": round(single_s * 1000, 2),
        "batch64_images_per_s": round(64 / batch_s, 1),
        "batch64_from_jpeg_bytes_images_per_s": round(64 / batch_bytes_s, 1),
        "batch64, the network called once for all 64, images_per_s": round(64 / one_call_s, 1),
        "batch64 / that (x, the gain of NETWORK_CHUNK)": round(one_call_s / batch_s, 3),
        "explain_ms": round(explain_s * 1000, 1),
        "explain_12mp_phone_jpeg_ms": round(explain_phone_s * 1000, 1),
        "peak_rss_mb": round(peak_rss_mb, 1),
        "baseline: network alone, 1 view, 1 image ms": round(base_single_s * 1000, 2),
        "baseline: network alone, 1 view, batch64_images_per_s": round(64 / base_batch_s, 1),
        "single_image / baseline (x)": round(single_s / base_single_s, 2),
        "batch64 / baseline throughput (x)": round(base_batch_s / batch_s, 3),
        "stored network, BatchNorm unfolded, 1 view, batch64_images_per_s": round(64 / stored_batch_s, 1),
        "baseline / stored network throughput (x, the folding's gain)": round(stored_batch_s / base_batch_s, 3),
        "runs": args.runs,
    }
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


def _one_network_call(clf, arrays, runs):
    """Seconds for predict_arrays with the whole batch in one call of the network, as before
    ml.inference.NETWORK_CHUNK split it."""
    from ml import inference

    chunk = inference.NETWORK_CHUNK
    inference.NETWORK_CHUNK = len(arrays)
    try:
        return timed(lambda: clf.predict_arrays(arrays), runs, warmup=2)[0]
    finally:
        inference.NETWORK_CHUNK = chunk


def _stored_network(model):
    """The Keras model as stored in the artifact, before load_classifier folds it."""
    import keras

    from ml import MODEL_FILENAME
    from ml.artifact import resolve_model_dir

    return keras.saving.load_model(resolve_model_dir(model) / MODEL_FILENAME, compile=False)


def _cold_load(model):
    """(TensorFlow import seconds, load_classifier seconds) in a fresh Python process.

    `ml` is imported first, as a worker does (it imports TensorFlow through ml.inference):
    under TensorFlow it marks JAX absent, which TensorFlow's import would otherwise pull in,
    0.4 s and 108 MB that a worker does not pay."""
    code = (
        "import sys, time, json; sys.path.insert(0, %r); import ml; "
        "t = time.perf_counter(); import tensorflow; "
        "t1 = time.perf_counter(); from ml.inference import load_classifier; load_classifier(%r); "
        "print(json.dumps([t1 - t, time.perf_counter() - t1]))"
    ) % (str(Path(__file__).resolve().parents[1]), str(model))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
