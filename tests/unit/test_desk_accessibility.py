"""The review desk for a clinician with a screen reader, where axe-core's page check does not go
(Django's admin): each queue row's links say whose photo of when, the probabilities table has
headers, and the coloured words can be read on the queue's rows, in the light theme and the
dark."""

import re
from pathlib import Path

import pytest
from django.utils import timezone
from django.utils.formats import date_format

from tests.unit.test_review_desk_safety import QUEUE_URL, change_url

pytestmark = pytest.mark.django_db


def link_names(html: str) -> list[str]:
    """The accessible names of the queue rows' case links: an image's alt text, or the text."""
    names = []
    for link in re.findall(r'<a href="/admin/diagnoses/diagnosis/[^"]+/change/[^"]*">(.*?)</a>', html, re.S):
        alt = re.search(r'alt="([^"]*)"', link)
        names.append(alt.group(1) if alt else re.sub(r"<[^>]+>", "", link).strip())
    return names


def test_each_rows_links_name_the_patient_and_the_time(reviewer_client, owner, make_diagnosis):
    photos = [make_diagnosis(owner, risk="high", age_days=days) for days in (1, 2)]

    names = link_names(reviewer_client.get(QUEUE_URL).content.decode())
    assert len(names) == 4 and len(set(names)) == 4  # two links a row, none alike
    for photo in photos:
        when = date_format(timezone.localtime(photo.created_at), "DATETIME_FORMAT")
        assert f"Photo of patient, {when}" in names
        assert f"patient: photo of {when}" in names


def test_the_probabilities_table_has_headers(reviewer_client, owner, make_diagnosis):
    html = reviewer_client.get(change_url(make_diagnosis(owner, risk="high"))).content.decode()
    table = html[html.index('<table class="probabilities">'):]
    table = table[:table.index("</table>")]
    assert '<th scope="col">Class</th>' in table
    assert table.count("<th scope='row'>") == 7 and "<td>Melanoma" not in table


def contrast(foreground: str, background: str) -> float:
    """WCAG 2.1's contrast ratio of two #rrggbb colours."""
    def luminance(colour):
        channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def theme_colours() -> dict[str, dict[str, str]]:
    """The bands' colours admin-review.css sets, by theme: its light rule, and each dark one
    (the system's dark mode, and the desk's toggle) as a theme of its own."""
    css = (Path(__file__).resolve().parents[2] / "static" / "css" / "admin-review.css").read_text()
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)  # comments
    themes = {}
    for selector, body in re.findall(r"([^{}]+)\{\s*(--risk-[^}]*)\}", css):
        colours = dict(re.findall(r"--risk-(\w+):\s*(#[0-9a-fA-F]{6})", body))
        themes[" ".join(selector.split())] = colours
    return themes


THEMES = theme_colours()
BACKGROUNDS = {"light": ["#ffffff", "#f8f8f8"], "dark": ["#121212", "#212121"]}  # rows, plain and striped


def test_every_theme_sets_every_band():
    assert sorted(THEMES) == [':root', ':root, html[data-theme="light"]', 'html[data-theme="dark"]']
    assert all(sorted(colours) == ["high", "low", "medium"] for colours in THEMES.values())


@pytest.mark.parametrize("selector", sorted(THEMES))
def test_the_bands_words_have_enough_contrast_in_each_theme(selector):
    backgrounds = BACKGROUNDS["light" if "light" in selector else "dark"]
    for band, colour in THEMES[selector].items():
        for row in backgrounds:
            assert contrast(colour, row) >= 4.5, (band, colour, row)  # WCAG AA, text of 13 px bold


def test_the_case_page_gives_the_risk_band_in_its_colour(reviewer_client, owner, make_diagnosis):
    html = reviewer_client.get(change_url(make_diagnosis(owner, risk="high"))).content.decode()
    risk = html[html.index('<div class="flex-container fieldBox field-risk_shown">'):]
    assert '<strong style="color:var(--risk-high)">High</strong>' in risk[:risk.index("</div>", 200)]
