"""molesite's classifier: a small CNN trained from scratch on HAM10000.

Pure Python + Keras, no Django. Importing ``ml`` (or ``ml.inference``) does not import
TensorFlow: it is imported lazily inside the functions that need it, so that a process can fork
(Celery's prefork pool) before TensorFlow starts its runtime.
"""

import json
import os
import sys
from pathlib import Path


def _keras_home() -> Path:
    """Keras's folder, found as keras.src.backend.config finds it (importing that module would
    import the backend itself): KERAS_HOME, else ~/.keras, or /tmp/.keras where ~ is read-only."""
    if "KERAS_HOME" in os.environ:
        return Path(os.environ["KERAS_HOME"]).expanduser()
    home = os.path.expanduser("~")
    return Path(home if os.access(home, os.W_OK) else "/tmp") / ".keras"


def _keras_backend_is_tensorflow() -> bool:
    """Whether Keras will run on TensorFlow, as Keras decides it: a non-empty KERAS_BACKEND,
    else the "backend" of keras.json in its folder, else its default, TensorFlow."""
    name = os.environ.get("KERAS_BACKEND")
    if not name:
        try:
            name = json.loads((_keras_home() / "keras.json").read_text()).get("backend")
        except (OSError, ValueError, AttributeError):
            name = None
    return (name or "tensorflow") == "tensorflow"


# Importing TensorFlow imports JAX whenever it is installed (tf.lite's util tries `from jax import
# jit`), and `make install` installs it, for training under Keras's JAX backend (the docker
# image does not): 108 MB more memory and 0.4 s more start-up in every process that loads the
# model. Under TensorFlow nothing here uses JAX, so such a process marks it as absent, which
# TensorFlow takes as not installed.
if _keras_backend_is_tensorflow():
    sys.modules.setdefault("jax", None)

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
CLASS_NAMES = {
    "akiec": "Actinic keratosis / intraepithelial carcinoma",
    "bcc": "Basal cell carcinoma",
    "bkl": "Benign keratosis",
    "df": "Dermatofibroma",
    "mel": "Melanoma",
    "nv": "Melanocytic nevus",
    "vasc": "Vascular lesion",
}
MALIGNANT = ("akiec", "bcc", "mel")
# What each supported number of test-time views averages over (ml.inference.make_logits_fn).
TTA_VIEWS = {1: "the photo as it is", 2: "the photo and its mirror image",
             4: "the photo flipped four ways (as is, left-right, upside down, both)"}
DEFAULT_MODEL_DIR = Path(__file__).parent / "artifacts"

# Bumped whenever the artifact's layout or meaning changes (inputs, outputs, card keys).
FORMAT_VERSION = 1
MODEL_FILENAME = "model.keras"
CARD_FILENAME = "model_card.json"
