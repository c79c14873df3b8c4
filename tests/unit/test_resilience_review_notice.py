"""A clinician's review saved while the broker is down: the save stands, and the patient's e-mail
is queued by the check for lost photos (tasks.recover_lost_diagnoses) once the broker is back,
rather than lost for good."""

from datetime import timedelta

import pytest
from django.utils import timezone
from kombu.exceptions import OperationalError

from diagnoses import services, tasks
from diagnoses.models import Review

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker(monkeypatch):
    """The review notices handed to the broker, [(review ids, updated)], while `up`."""

    class Broker:
        def __init__(self):
            self.up, self.notices = True, []

        def delay(self, review_ids, updated=False):
            if not self.up:
                raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            self.notices.append((sorted(review_ids), updated))

    fake = Broker()
    monkeypatch.setattr(tasks.send_review_notice, "delay", fake.delay)
    return fake


def save(diagnosis, reviewer, capture, **fields):
    with capture(execute=True):
        return services.review_save(diagnosis=diagnosis, reviewer=reviewer,
                                    **{"verdict": "agree", "recommendation": "routine", **fields})


def age(*reviews, minutes=20):
    """As if saved that long ago."""
    Review.objects.filter(pk__in=[r.pk for r in reviews]).update(
        reviewed_at=timezone.now() - timedelta(minutes=minutes))


def recover(capture):
    with capture(execute=True):
        return tasks.recover_lost_diagnoses()


def test_a_notice_the_broker_missed_is_queued_once_it_is_back(
        owner, reviewer, make_diagnosis, broker, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    broker.up = False
    first = save(make_diagnosis(owner), reviewer, capture)
    second = save(make_diagnosis(owner), reviewer, capture)
    assert Review.objects.filter(notice_queued_at__isnull=True).count() == 2  # the saves stand

    recover(capture)  # saved only now, their own hand-over may yet come: not owed yet
    age(first, second)
    recover(capture)  # owed, the broker still down: nothing lost, nothing queued
    assert broker.notices == [] and Review.objects.filter(notice_queued_at__isnull=True).count() == 2
    broker.up = True
    recover(capture)
    assert broker.notices == [(sorted([first.pk, second.pk]), False)]  # one e-mail for the patient
    recover(capture)
    assert len(broker.notices) == 1  # once


def test_a_notice_queued_at_the_save_is_not_queued_again(
        owner, reviewer, make_diagnosis, broker, django_capture_on_commit_callbacks):
    review = save(make_diagnosis(owner), reviewer, django_capture_on_commit_callbacks)
    age(review)
    recover(django_capture_on_commit_callbacks)
    assert broker.notices == [([review.pk], False)]


def test_a_missed_notice_of_a_changed_review_says_it_was_updated(
        owner, reviewer, make_diagnosis, broker, django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    diagnosis = make_diagnosis(owner)
    review = save(diagnosis, reviewer, capture)
    Review.objects.filter(pk=review.pk).update(notice_queued_at=timezone.now() - timedelta(hours=1))
    broker.up = False
    save(diagnosis, reviewer, capture, recommendation="monitor")
    broker.up = True
    age(review)

    recover(capture)
    assert broker.notices[-1] == ([review.pk], True)


def test_the_patient_gets_the_missed_e_mail(owner, reviewer, make_diagnosis, mailoutbox, eager_celery, monkeypatch,
                                            django_capture_on_commit_callbacks):
    capture = django_capture_on_commit_callbacks
    delay = tasks.send_review_notice.delay
    monkeypatch.setattr(tasks.send_review_notice, "delay", broker_down)
    review = save(make_diagnosis(owner), reviewer, capture)
    monkeypatch.setattr(tasks.send_review_notice, "delay", delay)
    age(review)

    recover(capture)
    assert [m.to for m in mailoutbox] == [[owner.email]]


def broker_down(*args, **kwargs):
    raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
