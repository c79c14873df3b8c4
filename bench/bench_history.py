"""History benchmark: python bench/bench_history.py [--sizes 10 1000] [--runs 5]

For a patient with N diagnoses (spread over 3 tracked moles, a third of them reviewed), prints
the number of SQL queries and the median render time of the history page (/diagnoses/), the
mole list (/diagnoses/moles/) and the API list (/api/v1/diagnoses/), then each page's time at
the largest N as a ratio to its time at the smallest, measured in the same run. The query
counts must not grow with N; times are wall-clock medians on whatever else the machine is doing,
and the ratios hold steadier than the times: compare those between runs.

Runs as production does (DEBUG off: no SQL logged, no debug pages; a throwaway SECRET_KEY;
warnings only in the log, so no request lines in the table) on a throwaway SQLite database in a
temporary folder, removed at the end; reads no .env and touches nothing of the project's.
"""

import argparse

from page_bench import measure, setup_django

setup_django()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import User  # noqa: E402
from diagnoses.models import Diagnosis, Mole, Review  # noqa: E402

PAGES = {"history": "/diagnoses/", "moles": "/diagnoses/moles/", "api list": "/api/v1/diagnoses/"}


def populate(user, count):
    Diagnosis.objects.filter(owner=user).delete()
    Mole.objects.filter(owner=user).delete()
    moles = [Mole.objects.create(owner=user, name=f"Mole {i}") for i in range(3)]
    probabilities = {"akiec": 0.02, "bcc": 0.03, "bkl": 0.1, "df": 0.02, "mel": 0.1, "nv": 0.7, "vasc": 0.03}
    diagnoses = Diagnosis.objects.bulk_create(
        Diagnosis(owner=user, mole=moles[i % 3], image="x.jpg", thumbnail="x.jpg", status="done", risk="low",
                  malignant_probability=0.15, probabilities=probabilities, predicted_class="nv", model_version="bench")
        for i in range(count)
    )
    Review.objects.bulk_create(
        Review(diagnosis=d, verdict="agree", label="nv", recommendation="routine", reviewed_at=timezone.now())
        for d in diagnoses[::3]
    )


def open_page(client, url):
    assert client.get(url).status_code == 200, url


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("bench", "bench@example.com", "bench pass phrase", consented_at=timezone.now())
    client = Client()
    client.force_login(user)
    print(f"{'diagnoses':>10} {'page':<10} {'queries':>8} {'median ms':>10}")
    medians = {}
    for size in args.sizes:
        populate(user, size)
        for name, url in PAGES.items():
            count, medians[size, name], _ = measure(lambda: open_page(client, url), args.runs)
            print(f"{size:>10} {name:<10} {count:>8} {medians[size, name]:>10.1f}")
    small, large = min(args.sizes), max(args.sizes)
    if large > small:
        print(f"\ntime with {large} diagnoses / time with {small}, same run:")
        for name in PAGES:
            print(f"{name:<10} {medians[large, name] / medians[small, name]:>6.2f}x")


if __name__ == "__main__":
    try:
        main()
    finally:
        connection.close()  # before the temporary folder goes (atexit)
