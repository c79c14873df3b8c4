"""Photos nobody is analysing any more: a task a broker restart lost, a worker killed in the
middle of one. celery beat runs services.diagnoses_recover_lost every few minutes; nothing
stays "queued" or "running" for ever."""

import os
from datetime import timedelta

import pytest
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from diagnoses import services, tasks
from diagnoses.models import Diagnosis
from molesite.health import check_queue

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """The ids classify_diagnosis was queued for (as the broker would get them)."""
    queued = []
    monkeypatch.setattr(tasks.classify_diagnosis, "delay", queued.append)
    return queued


def aged(diagnosis, *, queued_minutes=0, running_minutes=None, attempts=0):
    """The diagnosis as it would be that many minutes after it was queued, its task sent then (or
    claimed)."""
    now = timezone.now()
    queued_at = now - timedelta(minutes=queued_minutes)
    fields = {"queued_at": queued_at, "sent_at": queued_at, "attempts": attempts}
    if running_minutes is not None:
        fields.update(status=Diagnosis.Status.RUNNING, started_at=now - timedelta(minutes=running_minutes))
    Diagnosis.objects.filter(pk=diagnosis.pk).update(**fields)
    diagnosis.refresh_from_db()
    return diagnosis


def minutes_pass(diagnosis, minutes):
    """The diagnosis as it will be that many minutes later: its times that many minutes further back."""
    back = timedelta(minutes=minutes)
    Diagnosis.objects.filter(pk=diagnosis.pk).update(
        queued_at=F("queued_at") - back, sent_at=F("sent_at") - back, created_at=F("created_at") - back)
    diagnosis.refresh_from_db()
    return diagnosis


def recover(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return tasks.recover_lost_diagnoses()


def waited_minutes(diagnosis):
    return (timezone.now() - diagnosis.queued_at) / timedelta(minutes=1)


def test_it_sends_a_photo_queued_too_long_to_the_workers_again_once_in_a_while(
        owner, make_diagnosis, sent, django_capture_on_commit_callbacks):
    lost = aged(make_diagnosis(owner, status="queued"), queued_minutes=16)
    waiting = aged(make_diagnosis(owner, status="queued"), queued_minutes=5)

    assert recover(django_capture_on_commit_callbacks) == {"resent": 1, "requeued": 0, "failed": 0}
    assert sent == [str(lost.pk)]
    queued_at = lost.queued_at
    lost.refresh_from_db()
    assert lost.status == Diagnosis.Status.QUEUED and timezone.now() - lost.sent_at < timedelta(seconds=5)
    assert lost.queued_at == queued_at  # the patient's wait goes on
    # Five minutes later (beat's next run) it is not sent again: the copy may be on its way.
    assert recover(django_capture_on_commit_callbacks)["resent"] == 0
    assert sent == [str(lost.pk)]
    assert Diagnosis.objects.filter(pk=waiting.pk).values("queued_at", "sent_at").get() == {
        "queued_at": waiting.queued_at, "sent_at": waiting.sent_at}


def test_a_photo_sent_again_is_sent_again_only_once_the_limit_has_passed_since_and_keeps_its_wait(
        owner, make_diagnosis, sent, django_capture_on_commit_callbacks):
    """The workers are down, or far too few: every sweep finds the photo still queued. It goes
    out again once per LOST_QUEUED_AFTER of its sent_at, while its wait, what the patient's page,
    the desk and /healthz read, counts from the upload all along."""
    lost = aged(make_diagnosis(owner, status="queued"), queued_minutes=16)
    limit = services.LOST_QUEUED_AFTER.total_seconds()

    for minutes, resent in [(0, 1), (5, 0), (5, 0), (6, 1), (5, 0)]:  # 16, 21, 26, 32 and 37 minutes
        lost = minutes_pass(lost, minutes)
        assert recover(django_capture_on_commit_callbacks)["resent"] == resent
        lost.refresh_from_db()
        waited = waited_minutes(lost)
        queue = check_queue()
        assert queue["ok"] is False and queue["error"] == "QueueStalled", (waited, queue)
        assert queue["oldest_queued_s"] >= waited * 60 - 1 > limit
        assert lost.is_late and Diagnosis.objects.late().filter(pk=lost.pk).exists()
    assert sent == [str(lost.pk)] * 2
    assert round(waited_minutes(lost)) == 37


def test_a_photo_queued_again_after_its_worker_died_keeps_its_wait_and_is_sent_once(
        owner, make_diagnosis, sent, django_capture_on_commit_callbacks):
    """That analysis gave the patient no result: their wait goes on (Diagnosis.queued_at). The
    task just went out, so the next sweeps leave it for LOST_QUEUED_AFTER."""
    orphan = aged(make_diagnosis(owner, status="queued"), queued_minutes=12, running_minutes=11, attempts=1)
    queued_at = orphan.queued_at

    assert recover(django_capture_on_commit_callbacks) == {"resent": 0, "requeued": 1, "failed": 0}
    orphan.refresh_from_db()
    assert orphan.status == Diagnosis.Status.QUEUED and orphan.started_at is None
    assert orphan.queued_at == queued_at and timezone.now() - orphan.sent_at < timedelta(seconds=5)
    assert orphan.is_late and check_queue()["oldest_queued_s"] >= 12 * 60

    orphan = minutes_pass(orphan, 5)  # 17 minutes since the upload, 5 since it was sent again
    assert recover(django_capture_on_commit_callbacks) == {"resent": 0, "requeued": 0, "failed": 0}
    queue = check_queue()
    assert queue["ok"] is False and queue["oldest_queued_s"] >= 17 * 60
    orphan = minutes_pass(orphan, 11)
    assert recover(django_capture_on_commit_callbacks) == {"resent": 1, "requeued": 0, "failed": 0}
    assert sent == [str(orphan.pk)] * 2


def test_an_upload_and_a_re_run_are_each_a_new_wait_their_task_sent_at_once(
        owner, jpeg_bytes, make_diagnosis, sent, django_capture_on_commit_callbacks):
    from tests.unit.test_foundation import upload

    with django_capture_on_commit_callbacks(execute=True):
        uploaded = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    uploaded.refresh_from_db()
    assert uploaded.sent_at == uploaded.queued_at and timezone.now() - uploaded.queued_at < timedelta(seconds=5)

    rerun = aged(make_diagnosis(owner, risk="high"), queued_minutes=60)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.diagnosis_requeue(diagnosis=rerun)
    stored = Diagnosis.objects.get(pk=rerun.pk)
    assert stored.sent_at == stored.queued_at == rerun.queued_at == rerun.sent_at
    assert timezone.now() - stored.queued_at < timedelta(seconds=5)
    assert sent == [str(uploaded.pk), str(rerun.pk)]


def test_it_queues_again_a_photo_whose_worker_died_and_a_worker_then_analyses_it(
        owner, jpeg_bytes, tiny_model, eager_celery, django_capture_on_commit_callbacks):
    from tests.unit.test_foundation import upload

    with django_capture_on_commit_callbacks(execute=False):  # the upload's own task is lost
        diagnosis = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    assert services.diagnosis_claim(diagnosis_id=diagnosis.pk)  # a worker took it, then died
    # The redelivered task finds the row freshly claimed (here: not stale yet) and leaves it.
    aged(diagnosis, running_minutes=1, attempts=1)
    assert recover(django_capture_on_commit_callbacks) == {"resent": 0, "requeued": 0, "failed": 0}

    aged(diagnosis, running_minutes=11, attempts=1)
    assert recover(django_capture_on_commit_callbacks) == {"resent": 0, "requeued": 1, "failed": 0}

    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.DONE and diagnosis.attempts == 2
    assert diagnosis.risk in {"low", "medium", "high"} and diagnosis.heatmap


def test_it_fails_a_photo_that_workers_died_on_twice_with_a_readable_message(
        owner, make_diagnosis, sent, django_capture_on_commit_callbacks):
    twice = aged(make_diagnosis(owner, status="queued"), running_minutes=11, attempts=2)
    busy = aged(make_diagnosis(owner, status="queued"), running_minutes=2, attempts=2)

    assert recover(django_capture_on_commit_callbacks) == {"resent": 0, "requeued": 0, "failed": 1}
    assert sent == []
    twice.refresh_from_db()
    assert twice.status == Diagnosis.Status.FAILED and twice.error == services.MESSAGE_STOPPED
    assert twice.finished_at is not None
    assert Diagnosis.objects.get(pk=busy.pk).status == Diagnosis.Status.RUNNING


def test_it_leaves_finished_photos_alone(owner, make_diagnosis, sent, django_capture_on_commit_callbacks):
    done = aged(make_diagnosis(owner, risk="high"), queued_minutes=60)
    failed = aged(make_diagnosis(owner, status="failed"), queued_minutes=60)

    assert recover(django_capture_on_commit_callbacks) == {"resent": 0, "requeued": 0, "failed": 0}
    assert sent == []
    assert Diagnosis.objects.get(pk=done.pk).status == Diagnosis.Status.DONE
    assert Diagnosis.objects.get(pk=failed.pk).status == Diagnosis.Status.FAILED


def test_it_counts_each_start_and_starts_again_from_zero_when_staff_queue_it(owner, make_diagnosis, sent):
    diagnosis = make_diagnosis(owner, status="queued")
    assert services.diagnosis_claim(diagnosis_id=diagnosis.pk)
    diagnosis.refresh_from_db()
    assert diagnosis.attempts == 1
    services.diagnosis_fail(diagnosis_id=diagnosis.pk, message=services.MESSAGE_STOPPED)

    assert services.diagnosis_requeue(diagnosis=diagnosis)
    diagnosis.refresh_from_db()
    assert (diagnosis.status, diagnosis.attempts) == (Diagnosis.Status.QUEUED, 0)


def test_it_has_beat_look_for_lost_photos_every_five_minutes():
    entry = settings.CELERY_BEAT_SCHEDULE["recover-lost-diagnoses"]
    assert entry["task"] == tasks.recover_lost_diagnoses.name
    assert entry["schedule"] == timedelta(minutes=5)


def test_a_retried_hiccup_is_not_counted_as_a_worker_dying(owner, make_diagnosis, sent, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    diagnosis = make_diagnosis(owner, status="queued")
    monkeypatch.setattr(services, "_explain", lambda image_bytes: (_ for _ in ()).throw(OSError("share gone")))
    with pytest.raises(services.TransientClassificationError):
        services.diagnosis_classify(diagnosis_id=diagnosis.pk)
    assert Diagnosis.objects.get(pk=diagnosis.pk).attempts == 0
    # The retry's worker then dies: the first death, so the photo is queued again, not failed.
    assert services.diagnosis_claim(diagnosis_id=diagnosis.pk)
    aged(diagnosis, running_minutes=11, attempts=Diagnosis.objects.get(pk=diagnosis.pk).attempts)
    assert recover(django_capture_on_commit_callbacks) == {"resent": 0, "requeued": 1, "failed": 0}


def test_a_result_the_database_refused_leaves_no_heatmap_behind(owner, jpeg_bytes, tiny_model, private_media,
                                                                monkeypatch):
    from django.db import DatabaseError
    from django.db.models.query import QuerySet

    from tests.unit.test_foundation import upload

    diagnosis = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    real_update = QuerySet.update

    def update(queryset, **fields):
        if "heatmap" in fields:
            raise DatabaseError("connection lost")
        return real_update(queryset, **fields)

    monkeypatch.setattr(QuerySet, "update", update)
    with pytest.raises(services.TransientClassificationError):
        services.diagnosis_classify(diagnosis_id=diagnosis.pk)
    heatmaps = private_media / "heatmaps"
    assert not heatmaps.exists() or list(heatmaps.iterdir()) == []  # the overlay shows the photo


def test_a_heatmap_the_finished_row_names_is_kept_when_the_answer_to_its_update_is_lost(
        owner, jpeg_bytes, tiny_model, private_media, monkeypatch):
    # The update commits, then the connection drops before its answer: the row is done and names
    # the heatmap, and the retry leaves a finished row alone, so deleting the file would leave the
    # result pointing at nothing for good.
    from django.db import OperationalError
    from django.db.models.query import QuerySet

    from tests.unit.test_foundation import upload

    diagnosis = services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    real_update = QuerySet.update

    def update_committed_answer_lost(queryset, **fields):
        stored = real_update(queryset, **fields)
        if "heatmap" in fields:
            raise OperationalError("server closed the connection unexpectedly")
        return stored

    monkeypatch.setattr(QuerySet, "update", update_committed_answer_lost)
    with pytest.raises(services.TransientClassificationError):
        services.diagnosis_classify(diagnosis_id=diagnosis.pk)
    monkeypatch.setattr(QuerySet, "update", real_update)

    assert services.diagnosis_classify(diagnosis_id=diagnosis.pk) is None  # the retry: already done
    diagnosis.refresh_from_db()
    assert diagnosis.status == Diagnosis.Status.DONE and diagnosis.heatmap
    assert diagnosis.heatmap.storage.exists(diagnosis.heatmap.name)


def test_the_photo_check_goes_on_past_a_file_deleted_while_it_lists_the_folder(owner, jpeg_bytes, private_media,
                                                                                monkeypatch):
    # The site and the worker run beside checkphotos: a file listed may be gone when its age is read.
    from django.core.files.storage import FileSystemStorage

    from tests.unit.test_foundation import upload

    services.diagnosis_create(owner=owner, image=upload(jpeg_bytes))
    (private_media / "images" / "left-behind.jpg").write_bytes(b"x")
    os.utime(private_media / "images" / "left-behind.jpg", (0, 0))  # old enough to be an orphan
    listdir = FileSystemStorage.listdir

    def listdir_with_a_file_since_deleted(storage, path):
        folders, files = listdir(storage, path)
        return folders, [*files, "gone-since.jpg"] if path == "images" else files

    monkeypatch.setattr(FileSystemStorage, "listdir", listdir_with_a_file_since_deleted)
    assert services.orphaned_files() == ["images/left-behind.jpg"]
