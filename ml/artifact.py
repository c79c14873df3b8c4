"""Reading and writing the artifact folder: model.keras + model_card.json (atomic writes)."""

import datetime as dt
import errno
import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from . import CARD_FILENAME, CLASSES, FORMAT_VERSION, MODEL_FILENAME
from .errors import ModelArtifactError


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write beside path, then rename over it: a reader (or a crash) never meets half a file.
    A symlink to a regular file has its target replaced, and stays a link. A name that is not a
    regular file's (/dev/stdout, /dev/fd/3, a pipe, a link to one) is written straight to: there
    is nothing to rename over, and a rename would replace the device or the link with a file."""
    if _writes_through(path):
        _write_through(path, data)
        return
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with open(part, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)  # a failed write (a full disk) leaves no half file behind


def check_writable(path) -> None:
    """Raise OSError unless atomic_write_bytes(path, ...) can write there: checked before a long
    job, so that a wrong path fails in a second rather than after the work."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    if not _writes_through(path):
        check_folder_writable(Path(os.path.realpath(path)).parent)
        return
    descriptor = _descriptor(path)
    if descriptor is None:
        if not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
    else:
        import fcntl  # here: POSIX only, and only a descriptor's name needs it

        if fcntl.fcntl(descriptor, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:  # EBADF when not open
            raise OSError(errno.EBADF, "Bad file descriptor (not open for writing)", str(path))


def check_folder_writable(folder) -> None:
    """Raise OSError where files could not be written in folder (a read-only or full disk, no
    permission, a file in the way): a probe file is written and removed in it, or, while it is
    missing, in the nearest folder above it that exists, where the write will make it. The
    folder is not made here: a job that then fails leaves no empty folder behind."""
    nearest = Path(os.path.abspath(folder))
    while not nearest.exists() and not nearest.is_symlink():  # a dangling link is in the way
        nearest = nearest.parent
    if not nearest.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(nearest))
    fd, probe = tempfile.mkstemp(prefix=".probe-", suffix=".part", dir=nearest)
    os.close(fd)
    os.unlink(probe)


def _writes_through(path: Path) -> bool:
    """Whether path is written to in place rather than replaced: it is not a regular file (a
    device, a pipe), or it (or its link) names a file descriptor or lies under /proc, where a
    name may stand for a file the shell opened (/dev/stdout -> /proc/self/fd/1 -> r.json) whose
    replacement that descriptor would never see. A regular file elsewhere under /dev (/dev/shm,
    a memory disk) is replaced as anywhere else."""
    path = Path(path)
    if path.exists() and not path.is_file():
        return True
    if _descriptor(path) is not None:
        return True
    return any(name.startswith("/proc/") for name in _names(path))


def _names(path: Path) -> list[str]:
    """path made absolute, and the target of its link if it is one (one step, not resolved:
    /dev/stdout stays itself, where resolving would give the file the shell opened)."""
    name = os.path.normpath(os.path.abspath(path))
    if not path.is_symlink():
        return [name]
    return [name, os.path.normpath(os.path.join(os.path.dirname(name), os.readlink(path)))]


_STANDARD_STREAMS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}


def _descriptor(path) -> int | None:
    """The file descriptor that path (or its link) names (/dev/stdout, /dev/fd/3,
    /proc/self/fd/3), else None."""
    for name in _names(Path(path)):
        if name in _STANDARD_STREAMS:
            return _STANDARD_STREAMS[name]
        for prefix in ("/dev/fd/", "/proc/self/fd/"):
            if name.startswith(prefix) and name[len(prefix):].isdigit():
                return int(name[len(prefix):])
    return None


def _write_through(path, data: bytes) -> None:
    """data written to path in place. A descriptor's name is written through that descriptor:
    opening /dev/stdout again would start at offset 0 of a file the shell opened with `>`, and
    what is printed after would overwrite it."""
    descriptor = _descriptor(path)
    if descriptor is None:
        with open(path, "wb") as f:
            f.write(data)
        return
    for stream in (sys.stdout, sys.stderr):  # what was printed before comes first
        if stream is not None:
            stream.flush()
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


def json_safe(value):
    """value with NaN and infinities (a figure undefined on the data: the malignant AUC of a
    validation split or folder without a malignant lesion, say) as None: they are not JSON, and
    strict parsers (jq, browsers) refuse Python's bare NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def json_text(value) -> str:
    """value as strict, indented JSON, ending with a newline."""
    return json.dumps(json_safe(value), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path, value) -> None:
    """value as strict, indented JSON in path, written atomically."""
    atomic_write_bytes(Path(path), json_text(value).encode())


def save_model_file(model, out_dir) -> Path:
    """Save a Keras model (weights and architecture, no optimizer state) as out_dir/model.keras
    atomically; returns the path."""
    import keras

    if getattr(model, "optimizer", None) is not None:  # .keras files would carry Adam's moments
        # clone_model keeps the compiled optimizer (it tripled the file); from_config does not
        weights = model.get_weights()
        model = keras.Model.from_config(model.get_config())
        model.set_weights(weights)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Keras insists on a ".keras" suffix, so the ".part" file is a hidden temp file beside it.
    fd, tmp = tempfile.mkstemp(prefix=".model-", suffix=".part.keras", dir=out_dir)
    os.close(fd)
    try:
        model.save(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the web and worker users must read it
        os.replace(tmp, out_dir / MODEL_FILENAME)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_dir / MODEL_FILENAME


def save_card(card: dict, out_dir) -> Path:
    path = Path(out_dir) / CARD_FILENAME
    write_json(path, card)
    return path


def timestamp() -> str:
    """Now, in UTC to the second, as the card records when it was made or recalibrated."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def model_version(when: str, preset: str, model_sha256: str) -> str:
    """The card's version: the date of when (an ISO time), the preset and the model file's hash
    prefix, e.g. 2026.12.01-full-2e40fee7."""
    return f"{when[:10].replace('-', '.')}-{preset}-{model_sha256[:8]}"


def file_stamp(path) -> tuple:
    """(inode, mtime in ns, size) of a file, which changes whenever it is replaced: ml.artifact
    writes a new file and renames it into place, so the inode differs even within the clock's
    resolution. Raises OSError when the file is missing."""
    stat = Path(path).stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def resolve_model_dir(model) -> Path:
    """A model directory from a directory or from the path of its model.keras / card."""
    path = Path(model).expanduser().resolve()
    if path.is_file():
        path = path.parent
    return path


def read_card(model_dir, *, check_model=True) -> dict:
    """The validated card of an artifact folder; raises ModelArtifactError with a clear message.
    check_model=False leaves the model file's hash to the caller, which checks it on the bytes
    it loads (ml.inference), so that the file is read and hashed once."""
    model_dir = Path(model_dir)
    card_path = model_dir / CARD_FILENAME
    model_path = model_dir / MODEL_FILENAME
    if not card_path.is_file():
        raise ModelArtifactError(f"model card not found: {card_path} (train one with `python -m ml train`)")
    if not model_path.is_file():
        raise ModelArtifactError(f"model file not found: {model_path} (train one with `python -m ml train`)")
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelArtifactError(f"unreadable model card {card_path}: {exc}") from exc
    if not isinstance(card, dict):
        raise ModelArtifactError(f"model card {card_path} is not a JSON object")
    if card.get("format_version") != FORMAT_VERSION:
        raise ModelArtifactError(
            f"model artifact format version {card.get('format_version')!r} in {card_path} is not "
            f"the supported version {FORMAT_VERSION}; retrain with this code's `python -m ml train`"
        )
    missing = [k for k in ("version", "input_size", "classes", "temperature", "thresholds", "model_sha256")
               if k not in card]
    if missing:
        raise ModelArtifactError(f"model card {card_path} lacks key(s): {', '.join(missing)}")
    if card["classes"] != list(CLASSES):
        raise ModelArtifactError(f"model card classes {card['classes']} differ from {list(CLASSES)}")
    problems = _card_shape_problems(card)
    if problems:
        raise ModelArtifactError(f"model card {card_path} is malformed: {'; '.join(problems)}")
    if check_model:
        check_model_hash(card, sha256_file(model_path), model_path)
    return card


def check_model_hash(card, actual, model_path) -> None:
    """actual, the sha256 of the model file's bytes, is the one the card names."""
    if actual != card["model_sha256"]:
        raise ModelArtifactError(
            f"model file {model_path} is corrupt, does not belong to its card, or changed while it "
            f"was being loaded (a new model saved into its folder?) (sha256 {actual[:12]}…, card "
            f"says {str(card['model_sha256'])[:12]}…)"
        )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _card_shape_problems(card: dict) -> list[str]:
    """What is wrong with the values the classifier reads from the card. Caught here, a malformed
    card is an unusable model (`python -m ml` exits 2, /healthz says not loaded) rather than a
    KeyError or ValueError once the model is loaded."""
    problems = []
    size, thresholds, temperature = card["input_size"], card["thresholds"], card["temperature"]
    if not (isinstance(size, dict) and all(_is_positive_int(size.get(k)) for k in ("width", "height"))):
        problems.append(f"input_size must be {{\"width\": W, \"height\": H}} in pixels > 0, not {size!r}")
    if not (isinstance(thresholds, dict) and all(_is_number(thresholds.get(k)) for k in ("medium", "high"))):
        problems.append(f"thresholds must be {{\"medium\": number, \"high\": number}}, not {thresholds!r}")
    if not (_is_number(temperature) and temperature > 0):
        problems.append(f"temperature must be a number > 0, not {temperature!r}")
    offset = card.get("logit_offset")  # cards from before it have none, which means zeros
    if "logit_offset" in card and not (isinstance(offset, dict) and set(offset) == set(CLASSES)
                                       and all(_is_number(v) for v in offset.values())):
        problems.append(f"logit_offset must give a number for each of {list(CLASSES)} and no "
                        f"other key, not {offset!r}")
    return problems
