"""Command line: python -m ml {train,recalibrate,evaluate,compare,predict} (see --help of each)."""

import argparse
import io
import json
import logging
import os
import sys
from pathlib import Path

from . import DEFAULT_MODEL_DIR

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PREDICT_EPILOG = """\
Output: one line per image, in the order given, "image" being the path exactly as given. With
--json each line is a JSON object {"image", "probabilities", "malignant_probability",
"predicted_class", "risk", "model_version"}, or {"image", "error"} for a path that is not a
readable image file. Without --json, a short human-readable line naming the path with the
bytes it was given. Images are decoded one by one and classified in batches of 64.

Paths come after the options, and after -- when one may start with "-"; or one per line from a
file with --files-from FILE (- for standard input), before any given as arguments. FILE is read
as UTF-8 (a byte-order mark at its start is skipped); bytes that are not UTF-8 stand for
themselves, as in a path given as an argument.

A path whose name is not valid UTF-8 (Latin-1 from an old camera card) appears in "image" with
\\udcXX escapes in place of those bytes (as Python decodes it, e.g. "caf\\udce9.jpg"), so it may
not match the name as another program prints it: match such results by order, one line per
path, in the order given.

Exit status: 0 if at least one image was classified (error lines, if any, say which were
not), 1 if none could be or the output could not be written (a reader that stops early, as
`| head` does, ends it quietly), 2 for a usage error or an unusable model artifact.
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml", description="molesite's skin-lesion classifier")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train on a HAM10000 folder; write model.keras + model_card.json")
    p.add_argument("--data", required=True, type=Path, help="folder with HAM10000_metadata.csv and images")
    p.add_argument("--out", required=True, type=Path, help="artifact folder to write (e.g. ml/artifacts)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the preset's number of epochs")
    p.add_argument("--preset", choices=("full", "tiny"), default="full")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("recalibrate", help="refit a model's calibration on its validation photos",
                       description="Fits the card's calibration (prior-shift offset, temperature, "
                                   "risk thresholds, decision rule, validation figures) again on the "
                                   "model's validation photos, found in DATA by the card's image ids, "
                                   "and saves the card with a new version; the model file stays.")
    p.add_argument("--data", required=True, type=Path,
                   help="a HAM10000 folder holding the model's validation photos")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR,
                   help="artifact folder or its model.keras (default: the shipped one)")

    p = sub.add_parser("evaluate", help="score a model on a labelled HAM10000 folder")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="artifact folder or its model.keras")
    p.add_argument("--json", required=True, type=_json_target, dest="json_out", metavar="OUT",
                   help="where to write the JSON result (- for standard output, the summary line "
                        "then going to standard error)")
    p.add_argument("--split", choices=("all", "val"), default="all",
                   help="all images (default: for a folder of photos the model never saw; it warns "
                        "when some trained it), or only the model's own validation split (its "
                        "card's image ids)")

    p = sub.add_parser("compare", help="model B against model A on the same images, with paired intervals",
                       description="Scores two models on the same images and gives each one's accuracy, "
                                   "balanced accuracy and malignant AUC, the differences (B - A), their "
                                   "95% intervals from a paired bootstrap over lesions, and the share of "
                                   "resamples in which B does better.")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--a", required=True, type=Path, dest="model_a", help="artifact folder of model A (e.g. ml/artifacts)")
    p.add_argument("--b", required=True, type=Path, dest="model_b", help="artifact folder of model B (the candidate)")
    p.add_argument("--split", choices=("all", "val"), default="all",
                   help="all images (default: for a folder neither model saw; it warns when some "
                        "trained either), or the validation split both models share")
    p.add_argument("--json", type=_json_target, dest="json_out", metavar="OUT",
                   help="also write the JSON result here (- for standard output, the table then "
                        "going to standard error)")

    p = sub.add_parser("predict", help="classify image files", epilog=PREDICT_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="artifact folder or its model.keras")
    p.add_argument("--files-from", metavar="FILE",
                   help="read image paths from FILE, one per line (- for standard input)")
    # str, not Path: each output line names the image exactly as given ("./a.jpg" stays so)
    p.add_argument("images", nargs="*", metavar="IMAGE")

    args = parser.parse_args(argv)
    if args.command == "predict":
        args.images = _paths_to_classify(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    from .errors import MLError, ModelArtifactError

    try:
        returncode = COMMANDS[args.command](args)
        _emit([])  # what stdout still buffers: its failure is reported here, not at exit
        return returncode
    except BrokenPipeError:
        # The reader left (`| head`): stop quietly, as the signal module's docs advise, with
        # stdout on /dev/null so that Python's flush at exit does not fail again.
        _discard_stdout()
        return 1
    except _OutputError as exc:
        _discard_stdout()
        print(f"error: cannot write output: {exc.__cause__}", file=sys.stderr)
        return 1
    except ModelArtifactError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (MLError, OSError) as exc:  # OSError: a folder or disk that failed us, not a bug
        print(f"error: {exc}", file=sys.stderr)
        return 1


class _OutputError(Exception):
    """Writing to stdout failed (a full disk, /dev/full); its __cause__ is the OSError."""


def _emit(lines) -> None:
    """Print lines and flush stdout, so a reader gets them now. A failed write is an _OutputError;
    a closed pipe stays a BrokenPipeError, which main() ends quietly."""
    try:
        for line in lines:
            print(line)
        if sys.stdout is not None:  # None when the shell closed it (>&-): print wrote nothing
            sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _OutputError() from exc


def _discard_stdout() -> None:
    """Point stdout at /dev/null: what it still buffers cannot be written, and Python would try
    again at exit, printing a traceback."""
    try:
        stdout = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # no stdout, or not a file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stdout)
    finally:
        os.close(devnull)


def _json_target(text):
    """--json OUT: "-" (standard output) as it is, any other name as a Path ("./-" is a file)."""
    return text if text == "-" else Path(text)


def _paths_to_classify(parser, args) -> list[str]:
    """--files-from's lines (blank ones skipped), then the IMAGE arguments; at least one."""
    paths = [] if args.files_from is None else _listed_paths(parser, args.files_from)
    paths += args.images
    if not paths:
        parser.error("predict: give at least one IMAGE, or --files-from")
    return paths


def _listed_paths(parser, name: str) -> list[str]:
    """The paths in a list file, one a line (blank ones skipped), decoded as UTF-8 with
    surrogateescape, as Python decodes a path given as an argument: a name that is not UTF-8
    (Latin-1 from an old camera card) opens as the same file. A byte-order mark, which Windows
    editors put first, is dropped instead of starting the first path."""
    try:
        data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    except OSError as exc:
        parser.error(f"argument --files-from: can't open '{name}': {exc}")
    text = data.decode("utf-8-sig", errors="surrogateescape")
    lines = io.StringIO(text, newline=None)  # \r\n and \r end a line too, as in a text file
    return [line.rstrip("\n") for line in lines if line.strip()]


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def cmd_train(args) -> int:
    from .artifact import json_safe
    from .training import train

    card = train(data_dir=args.data, out_dir=args.out, epochs=args.epochs, preset=args.preset, seed=args.seed)
    v = card["validation"]
    summary = {"version": card["version"], "out": str(args.out),
               "balanced_accuracy": v["balanced_accuracy"], "accuracy": v["accuracy"],
               "malignant_auc": v["malignant_auc"], "thresholds": card["thresholds"],
               "total_seconds": card["training"]["total_seconds"]}
    print(json.dumps(json_safe(summary), allow_nan=False))
    return 0


def cmd_recalibrate(args) -> int:
    from .artifact import json_safe
    from .calibration import recalibrate

    card = recalibrate(data_dir=args.data, model_dir=args.model)
    v = card["validation"]
    summary = {"version": card["version"],
               "previous_version": card["recalibrated"]["previous_version"],
               "temperature": card["temperature"], "tau": card["decision"]["tau"],
               "thresholds": card["thresholds"], "accuracy": v["accuracy"],
               "balanced_accuracy": v["balanced_accuracy"], "malignant_auc": v["malignant_auc"],
               "ece": v["ece_after"], "nll": v["nll_after"]}
    print(json.dumps(json_safe(summary), allow_nan=False))
    return 0


def cmd_evaluate(args) -> int:
    from .artifact import json_safe
    from .evaluation import evaluate

    _check_json_target(args.json_out)  # before the scoring, not after it
    result = json_safe(evaluate(data_dir=args.data, model_dir=args.model, split=args.split))
    _write_result(args.json_out, result)
    _warn_of_training_images(result["n_training_images"], result["n_images"], "the model")
    print(json.dumps({k: result[k] for k in ("n_images", "n_training_images", "accuracy", "balanced_accuracy",
                                             "malignant_auc", "ece")}), file=_summary_stream(args.json_out))
    return 0


def _check_json_target(path) -> None:
    """An MLError now, before minutes of scoring, where --json's file cannot be written (its
    folder a file, or not writable; the path a folder)."""
    from .artifact import check_writable
    from .errors import MLError

    if path is None or path == "-":
        return
    try:
        check_writable(path)
    except OSError as exc:
        raise MLError(f"cannot write JSON to {path}: {exc.strerror or exc}") from exc


def _write_result(path, result) -> None:
    from .artifact import json_text, write_json
    from .errors import MLError

    if path == "-":
        _emit([json_text(result).rstrip("\n")])
        return
    try:
        write_json(path, result)
    except OSError as exc:
        raise MLError(f"cannot write JSON to {path}: {exc.strerror or exc}") from exc


def _summary_stream(json_out):
    """Where the human summary goes: stderr when the JSON result takes stdout (--json -), so
    that stdout holds the JSON alone for a parser."""
    return sys.stderr if json_out == "-" else sys.stdout


def _warn_of_training_images(n_training, n_images, model) -> None:
    """On stderr: figures that include photos the model trained on flatter it."""
    if n_training:
        print(f"warning: {model} trained on {n_training} of the {n_images} images scored, so these "
              "figures include training photos and flatter it; use --split val to score only the "
              "validation split, or a folder of lesions it never saw", file=sys.stderr)


def cmd_compare(args) -> int:
    from .evaluation import compare
    from .metrics import BOOTSTRAP_FIGURES

    _check_json_target(args.json_out)  # before the scoring, not after it
    result = compare(data_dir=args.data, model_a=args.model_a, model_b=args.model_b, split=args.split)
    if args.json_out:
        _write_result(args.json_out, result)
    for name, n_training in result["n_training_images"].items():
        _warn_of_training_images(n_training, result["n_images"], f"model {name.upper()}")
    table = _summary_stream(args.json_out)
    print(f"A = {result['model_a']}, B = {result['model_b']}: {result['n_images']} images of "
          f"{result['n_lesions']} lesions ({result['split']})", file=table)
    print(f"{'figure':<18} {'A':>7} {'B':>7} {'B - A':>8}  {'95% interval':<18} B better in", file=table)
    for key in BOOTSTRAP_FIGURES:
        f = result[key]
        interval = "[{:+.4f}, {:+.4f}]".format(*f["interval"]) if f["interval"] else "-"
        share = f"{f['b_better_share']:.0%} of resamples" if f["b_better_share"] is not None else "-"
        print(f"{key:<18} {f['a']:>7.4f} {f['b']:>7.4f} {f['difference']:>+8.4f}  {interval:<18} {share}",
              file=table)
    return 0


def cmd_predict(args) -> int:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from .inference import BATCH_SIZE, load_classifier

    if not args.json:
        _write_names_as_given()
    classifier = load_classifier(args.model)
    batches = [args.images[start:start + BATCH_SIZE] for start in range(0, len(args.images), BATCH_SIZE)]
    n_ok = 0
    # One thread reads and decodes the next batch while the network runs on this one: Pillow
    # and TensorFlow both release the GIL, and the network alone leaves part of the CPU idle.
    with ThreadPoolExecutor(max_workers=1) as reader:
        pending = reader.submit(_read_batch, classifier, batches[0])
        for k, paths in enumerate(batches):
            arrays, errors = pending.result()
            if k + 1 < len(batches):
                pending = reader.submit(_read_batch, classifier, batches[k + 1])
            preds = dict(zip(arrays, classifier.predict_arrays(np.stack(list(arrays.values()))) if arrays else []))
            n_ok += len(preds)
            _emit(_prediction_line(path, preds.get(i), errors.get(i), args.json) for i, path in enumerate(paths))
    return 0 if n_ok else 1


def _write_names_as_given() -> None:
    """Plain lines name each path with the bytes it was given, as `ls` does: a name that is not
    UTF-8 (decoded with surrogate escapes) would fail a strict stdout, as a UTF-8 locale's is."""
    if hasattr(sys.stdout, "reconfigure"):  # a TextIOWrapper; not a test's capture
        sys.stdout.reconfigure(errors="surrogateescape")


def _read_batch(classifier, paths) -> tuple[dict, dict]:
    """Model inputs and error messages of a batch of image paths, each by its index in paths."""
    from .errors import ImageError

    arrays, errors = {}, {}
    for i, path in enumerate(paths):
        try:
            arrays[i] = classifier.preprocess(_image_file_bytes(path), original=True)
        except (OSError, ImageError) as exc:
            errors[i] = str(exc) if isinstance(exc, ImageError) else f"cannot read file: {exc.strerror or exc}"
        except Exception as exc:  # one file's surprise must not cost the lines of all the rest
            errors[i] = f"cannot classify: {type(exc).__name__}: {exc}"
    return arrays, errors


def _image_file_bytes(path: str) -> bytes:
    """The bytes of a regular file; a directory, a pipe or a device is refused before reading
    (a named pipe or /dev/zero would block or fill the memory)."""
    import stat

    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError(f"not a regular file: {path}")
    return Path(path).read_bytes()


def _prediction_line(path, pred, error, as_json) -> str:
    """The output line of one path: its prediction, or its error when pred is None."""
    if pred is None:
        return json.dumps({"image": path, "error": error}) if as_json else f"{path}: error: {error}"
    if as_json:
        return json.dumps({"image": path, **pred.to_dict()})
    return f"{path}: {pred.predicted_class} malignant={pred.malignant_probability:.3f} risk={pred.risk}"


COMMANDS = {"train": cmd_train, "recalibrate": cmd_recalibrate, "evaluate": cmd_evaluate,
            "compare": cmd_compare, "predict": cmd_predict}

if __name__ == "__main__":
    sys.exit(main())
