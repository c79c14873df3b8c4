import logging
import os
import signal
import threading

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "molesite.settings")

app = Celery("molesite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)

CLASSIFY_TASK = "diagnoses.tasks.classify_diagnosis"


@worker_process_init.connect
def warm_up_classifier(**_):
    """Load the model in each worker child, in the background, so that the first patient does
    not wait for TensorFlow to start. The handler itself returns at once: Celery kills a child
    whose init takes over 4 seconds. TensorFlow is thus imported only after the fork. Not in a
    worker that takes no classifications (docker-compose.yml's mailer, `-Q mail`): none of its
    tasks calls the classifier, and the model would only take its memory."""
    if not consumes_classifications():
        return
    threading.Thread(target=_load_classifier, name="classifier-warm-up", daemon=True).start()


@worker_process_init.connect
def ignore_sigterm(**_):
    """Under `make run` (the Procfile sets MOLESITE_POOL_IGNORE_SIGTERM), a pool process ignores
    SIGTERM, which Celery sets back to its default (the process ends at once) when it starts one:
    on Ctrl-C, honcho sends SIGTERM to the worker's whole process group, and the pool process
    would die in the middle of its task, which the broker then delivers again (a patient e-mailed
    twice, say). The main process shuts down warm instead, waiting for the task. Elsewhere
    (docker compose stops the main process alone) SIGTERM keeps its use: a cold shutdown and
    revoke(terminate=True) end a pool process with it."""
    if os.environ.get("MOLESITE_POOL_IGNORE_SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def consumes_classifications() -> bool:
    """Whether this worker consumes the queue the classifications are routed to: the queues its
    -Q selected (all those declared, without -Q), set in the main process before the fork."""
    queue = app.amqp.router.route({}, CLASSIFY_TASK)["queue"]
    return queue.name in app.amqp.queues.consume_from


def _load_classifier():
    from django.conf import settings
    from PIL import Image

    from ml.inference import get_classifier

    try:
        # One explanation traces the Grad-CAM graph too, not only the forward pass.
        get_classifier(settings.ML_MODEL_DIR).explain(Image.new("RGB", (200, 150), (190, 140, 120)))
    except Exception:  # the task reports an unusable model to the patient; here we only log it
        logger.exception("could not warm up the classifier from %s", settings.ML_MODEL_DIR)
