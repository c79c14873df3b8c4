"""Fixtures shared by every test: private media in a temporary folder, users on both sides,
and a tiny classifier trained on the fly on synthetic lesions (never a hard-coded result)."""

import io

import pytest
from PIL import Image

from molesite.celery import app as celery_app


@pytest.fixture(autouse=True)
def plain_static_files(settings):
    """Tests run without collectstatic, so the hashed-manifest storage has nothing to read."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def private_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from ml import synthetic, training

    root = tmp_path_factory.mktemp("tiny-model")
    data_dir = synthetic.make_dataset(root / "data", per_class=12, seed=0)
    training.train(data_dir=data_dir, out_dir=root / "model", preset="tiny", seed=0)
    return root / "model"


@pytest.fixture
def tiny_model(settings, tiny_model_dir):
    settings.ML_MODEL_DIR = tiny_model_dir
    return tiny_model_dir


@pytest.fixture
def eager_celery():
    """Run queued tasks inline, as a worker would, when on_commit callbacks fire."""
    celery_app.conf.task_always_eager = True
    yield celery_app
    celery_app.conf.task_always_eager = False


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("patient", "patient@example.com", "correct horse battery")


@pytest.fixture
def outsider(django_user_model):
    return django_user_model.objects.create_user("outsider", "outsider@example.com", "another long secret")


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def outsider_client(outsider):
    """A browser of its own, so a test can hold the owner's and the outsider's at once."""
    from django.test import Client

    other = Client()
    other.force_login(outsider)
    return other


def make_image_bytes(fmt="JPEG", size=(200, 150), colour=(180, 120, 90), **save_kwargs) -> bytes:
    image = Image.new("RGB", size, colour)
    # A darker blob in the middle, so the photo looks like a lesion on skin.
    for x in range(size[0] // 3, 2 * size[0] // 3):
        for y in range(size[1] // 3, 2 * size[1] // 3):
            image.putpixel((x, y), (70, 40, 30))
    out = io.BytesIO()
    image.save(out, format=fmt, **save_kwargs)
    return out.getvalue()


@pytest.fixture
def jpeg_bytes():
    return make_image_bytes()
