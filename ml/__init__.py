"""molesite's classifier: a small CNN trained from scratch on HAM10000.

Pure Python + Keras, no Django. Importing ``ml`` (or ``ml.inference``) does not import
TensorFlow: it is imported lazily inside the functions that need it, so that a process can fork
(Celery's prefork pool) before TensorFlow starts its runtime.
"""

from pathlib import Path

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
