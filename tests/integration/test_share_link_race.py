"""Two share links made at once for a check's last free place, on the real Postgres."""

import threading

from diagnoses import services
from diagnoses.models import ShareLink
from tests.integration.conftest import run_held_in_another_thread

DAYS = 7


def another_request_making_a_link(diagnosis, monkeypatch):
    """Another request making a link of the same check, held after it has counted the active links
    (between its check and its commit) when the test goes on; it goes on half a second later.
    Returns the thread and what it ended with: the link it made, or the refusal."""
    token_hash = services._token_hash  # called after the count, before the link is written
    outcome = []

    def make(hold):
        this_thread = threading.get_ident()

        def held_after_the_count(token):
            if threading.get_ident() == this_thread:
                hold()
            return token_hash(token)

        monkeypatch.setattr(services, "_token_hash", held_after_the_count)
        try:
            outcome.append(services.share_link_create(diagnosis=diagnosis, days=DAYS)[0])
        except services.ShareLinkRefused as refused:
            outcome.append(refused)

    return run_held_in_another_thread(make), outcome


def test_two_links_made_at_once_for_the_last_free_place_make_only_one(transactional_db, owner,
                                                                       make_diagnosis, monkeypatch):
    diagnosis = make_diagnosis(owner)
    for _ in range(services.SHARE_LINKS_PER_DIAGNOSIS - 1):
        services.share_link_create(diagnosis=diagnosis, days=DAYS)

    other, other_outcome = another_request_making_a_link(diagnosis, monkeypatch)
    # The other request has seen 4 active links. Without the lock on the check this one would
    # see 4 as well, and both would make theirs: 6 active links.
    try:
        services.share_link_create(diagnosis=diagnosis, days=DAYS)
    except services.ShareLinkRefused as refused:
        this_outcome = refused
    else:
        this_outcome = None
    other.join(10)

    assert not other.is_alive()
    assert ShareLink.objects.filter(diagnosis=diagnosis).active().count() == 5
    # The request that counted first made its link; this one waited for it, and was refused.
    assert len(other_outcome) == 1 and isinstance(other_outcome[0], ShareLink)
    assert isinstance(this_outcome, services.ShareLinkRefused)
    assert "already has 5 active links" in str(this_outcome)
