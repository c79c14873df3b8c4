"""The review desk's header (the Django admin) says "Sign out", as the site's header does, not
Django's "Log out": the same POST form to the admin's log-out, only its word changed."""

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", [reverse("admin:index"), reverse("admin:diagnoses_diagnosis_changelist")])
def test_the_desks_header_says_sign_out_in_a_post_form(reviewer_client, url):
    response = reviewer_client.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    tools = page.split('id="user-tools"', 1)[1].split("</div>", 1)[0]
    assert "Log out" not in page
    form = re.search(r'<form id="logout-form" method="post" action="([^"]+)">(.*?)</form>', tools, re.S)
    assert form and form.group(1) == reverse("admin:logout")
    assert 'name="csrfmiddlewaretoken"' in form.group(2)
    assert re.search(r'<button type="submit">\s*Sign out\s*</button>', form.group(2))
    # the site's words for the other links: "Change password" as its own page is titled
    assert f'<a href="{reverse("admin:password_change")}">Change password</a>' in tools
    assert "View site" in tools


def test_the_desks_sign_out_signs_out(reviewer_client):
    assert reviewer_client.post(reverse("admin:logout")).status_code == 302
    assert reviewer_client.get(reverse("admin:index")).status_code == 302
