"""Review queue benchmark: python bench/bench_queue.py [--sizes 100 10000] [--runs 5] [--database DB]

For N cases (patients of about 25 photos each over 3 tracked moles, a tenth untracked; mostly
done, low, medium or high, some failed, the newest queued; a third of the finished ones reviewed,
and one in 25 of those since re-run by another model, its review kept, of the earlier result:
urgent, a dermatologist soon or routine in turn), prints the number of SQL queries and the median
time of the review queue's first page (the Diagnosis changelist, as a signed-in superuser) and of
the clinicians' morning e-mail (services.review_queue_digest_send, to 3 clinicians), then each
one's time at the largest N as a ratio to its time at the smallest, measured in the same run. The
query counts must not grow with N; the queue orders every case by correlated subqueries
(services.QUEUE_RANK), so its time does. Times are wall-clock medians on whatever else the
machine is doing: compare the ratios.

DB is sqlite (the default) or postgres: the Postgres at 127.0.0.1:5432 (user postgres, trust
authentication), in a throwaway database dropped at the end; it also prints a summary of EXPLAIN
ANALYZE of the queue's page query at the largest N: how much of its time went to compiling it
(JIT), whether it reads every case (a sequential scan) and which subqueries it runs for each.

Runs as production does (DEBUG off, a throwaway SECRET_KEY, warnings only in the log) with the
second sign-in step off (STAFF_REQUIRE_2FA) and e-mails kept in memory; SQLite in a temporary
folder, removed at the end; reads no .env and touches nothing of the project's.
"""

import argparse
import random
import secrets
from datetime import timedelta

from page_bench import measure, setup_django

POSTGRES = "postgres://postgres@127.0.0.1:5432"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 10000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    return parser.parse_args()


def create_postgres_database() -> str:
    """A new empty database's name; the caller drops it (drop_postgres_database)."""
    import psycopg

    name = f"molesite_bench_{secrets.token_hex(4)}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as server:
        server.execute(f"CREATE DATABASE {name}")
    return name


def drop_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as server:
        server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# Settings come from the environment, read once by django.setup(): the database is chosen first.
ARGS = parse_args()
PG_NAME = create_postgres_database() if ARGS.database == "postgres" else None
setup_django(
    f"{POSTGRES}/{PG_NAME}" if PG_NAME else None,
    STAFF_REQUIRE_2FA="false",  # the admin without the authenticator code: not what is measured
    EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
)

from django.core import mail  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from accounts.models import User  # noqa: E402
from diagnoses import services  # noqa: E402
from diagnoses.models import Diagnosis, Mole, Review  # noqa: E402

QUEUE_URL = "/admin/diagnoses/diagnosis/"
PHOTOS_PER_PATIENT = 25
MOLES_PER_PATIENT = 3
CLINICIANS = 3
# One reviewed case in this many was re-run by another model since, its review (one of these in
# turn) kept, of the earlier result.
RERUN_EVERY = 25
RERUN_RECOMMENDATIONS = ["urgent", "dermatologist_soon", "routine"]
PROBABILITIES = {  # plausible classifier outputs by band (as tests/conftest.py's)
    "high": {"akiec": 0.04, "bcc": 0.06, "bkl": 0.05, "df": 0.01, "mel": 0.62, "nv": 0.2, "vasc": 0.02},
    "medium": {"akiec": 0.05, "bcc": 0.2, "bkl": 0.1, "df": 0.02, "mel": 0.1, "nv": 0.5, "vasc": 0.03},
    "low": {"akiec": 0.01, "bcc": 0.02, "bkl": 0.04, "df": 0.01, "mel": 0.02, "nv": 0.88, "vasc": 0.02},
}


def populate(count: int, reviewer) -> None:
    """count cases, a year of uploads, oldest first; the same ones on every run (seeded)."""
    User.objects.filter(username__startswith="patient-").delete()  # the cases of a smaller N
    rng = random.Random(count)
    patients = User.objects.bulk_create(
        User(username=f"patient-{i}", email=f"patient-{i}@example.com", password="!", consented_at=timezone.now())
        for i in range(max(2, count // PHOTOS_PER_PATIENT)))
    moles = Mole.objects.bulk_create(Mole(owner=patient, name=f"Mole {m}")
                                     for patient in patients for m in range(MOLES_PER_PATIENT))
    moles_of = {patient.pk: [mole for mole in moles if mole.owner_id == patient.pk] for patient in patients}
    now = timezone.now()
    start = now - timedelta(days=365)
    cases = []
    for i in range(count):
        owner = patients[i % len(patients)]
        created = start + timedelta(days=365) * i / count
        mole = None if rng.random() < 0.1 else rng.choice(moles_of[owner.pk])
        cases.append(make_case(rng, i / count, owner, mole, created, now))
    # created_at is auto_now_add, which bulk_create would set to now for every row: the cases'
    # order in time is what the queue's subqueries compare, so the field takes the given value.
    created_at = Diagnosis._meta.get_field("created_at")
    created_at.auto_now_add = False
    try:
        Diagnosis.objects.bulk_create(cases, batch_size=1000)
    finally:
        created_at.auto_now_add = True
    done = [case for case in cases if case.status == Diagnosis.Status.DONE]
    reviewed = done[::3]
    Review.objects.bulk_create(
        Review(diagnosis=case, reviewer=reviewer, model_version=case.model_version, reviewed_at=case.finished_at,
               # a tenth could not tell from the photo: a photo rated higher before still counts
               verdict=Review.Verdict.UNCLEAR if n % 10 == 0 else Review.Verdict.AGREE,
               recommendation=RERUN_RECOMMENDATIONS[n // RERUN_EVERY % 3] if n % RERUN_EVERY == 1 else "routine")
        for n, case in enumerate(reviewed))
    # Re-run since by another model: the review is of an earlier result, and a pressing one
    # stands until a clinician reviews the new result (services.QUEUE_RANK ranks by it).
    Diagnosis.objects.filter(pk__in=[case.pk for case in reviewed[1::RERUN_EVERY]]).update(model_version="bench-2")
    if connection.vendor == "postgresql":
        # A live database has statistics (autovacuum); without them the planner guesses.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def make_case(rng, age, owner, mole, created, now) -> Diagnosis:
    """One case; age: its place in the year, 0 oldest to 1 newest. The newest few are still
    queued; failures come more often near the end (an outage), so some still wait for a new photo."""
    case = Diagnosis(owner=owner, mole=mole, image="x.jpg", thumbnail="x.jpg", sha256="0" * 64,
                     created_at=created, queued_at=created)
    if age > 0.98:
        case.status, case.queued_at = Diagnosis.Status.QUEUED, now  # just uploaded: not late
    elif rng.random() < (0.25 if age > 0.9 else 0.05):
        case.status, case.finished_at = Diagnosis.Status.FAILED, created + timedelta(seconds=30)
        case.error = services.MESSAGE_UNEXPECTED
    else:
        risk = rng.choices(["low", "medium", "high"], weights=[65, 25, 10])[0]
        case.status, case.finished_at = Diagnosis.Status.DONE, created + timedelta(seconds=5)
        case.model_version = "bench"
        case.risk, case.probabilities = risk, PROBABILITIES[risk]
        case.malignant_probability = sum(PROBABILITIES[risk][name] for name in ("mel", "bcc", "akiec"))
        case.predicted_class = max(PROBABILITIES[risk], key=PROBABILITIES[risk].get)
    return case


def open_queue(client):
    response = client.get(QUEUE_URL)
    assert response.status_code == 200 and b"Review queue" in response.content, response.status_code


def send_digest():
    assert services.review_queue_digest_send() == CLINICIANS


def undo_digest():
    # Once a day each clinician: the next call would send nothing.
    User.objects.filter(queue_email_sent_on__isnull=False).update(queue_email_sent_on=None)
    mail.outbox = []


def explain(sql: str) -> list[str]:
    """A few lines of EXPLAIN ANALYZE of sql: its time and how much of it went to compiling it
    (JIT, which Postgres turns on, with inlining and optimisation from jit_optimize_above_cost,
    by the planner's cost estimate, which grows with every subquery run for each row), how it
    reads the cases, its costliest subqueries (each run once a row it orders)."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
        result = cursor.fetchone()[0]
        cursor.execute("SHOW jit_optimize_above_cost")
        optimize_above = cursor.fetchone()[0]
    result = result[0] if isinstance(result, list) else result
    jit = result.get("JIT")
    compiled = "no JIT"
    if jit:
        optimised = "optimised" if jit["Options"]["Optimization"] else "not optimised"
        compiled = f"JIT {jit['Timing']['Total']:.1f} ms of it, {optimised}"
    outer, subplans = [], []
    walk(result["Plan"], outer, subplans, None)
    lines = [f"execution {result['Execution Time']:.1f} ms ({compiled}); planner's estimated cost "
             f"{result['Plan']['Total Cost']:.0f} (jit_optimize_above_cost {optimize_above})",
             f"cases read by: {', '.join(outer) or 'no scan'}"]
    ran = sorted((s for s in subplans if s["loops"]), key=lambda s: -s["ms"])
    lines.append(f"{len(subplans)} subplans, {len(ran)} run; the costliest:")
    lines += [f"  {s['name']:<11} {s['loops']:>7} loops {s['ms']:>9.1f} ms  {s['reads']}" for s in ran[:4]]
    return lines


def walk(node, outer, subplans, subplan):
    """Collects the scans outside subplans (outer) and, per subplan, its loops, total time and
    what it reads."""
    if node.get("Parent Relationship") == "SubPlan":
        subplan = {"name": node.get("Subplan Name", "SubPlan"), "loops": node.get("Actual Loops", 0),
                   "ms": node.get("Actual Total Time", 0) * node.get("Actual Loops", 0), "reads": ""}
        subplans.append(subplan)
    if "Relation Name" in node or "Index Name" in node:
        read = f"{node['Node Type']} on {node.get('Index Name') or node['Relation Name']}"
        if subplan is None:
            outer.append(f"{read} ({node.get('Actual Rows', 0) * node.get('Actual Loops', 1):.0f} rows)")
        elif not subplan["reads"]:
            subplan["reads"] = read
    for child in node.get("Plans", []):
        walk(child, outer, subplans, subplan)


def main():
    call_command("migrate", verbosity=0)
    admin_user = User.objects.create_superuser("bench", "bench@example.com", "bench pass phrase")
    clinicians = [services.reviewer_create(username=f"dr-{i}", email=f"dr-{i}@example.com", password="a long secret")
                  for i in range(CLINICIANS)]
    User.objects.update(email_confirmed_at=timezone.now())  # the digest goes to confirmed addresses only
    client = Client()
    client.force_login(admin_user)
    tasks = {"queue page": (lambda: open_queue(client), lambda: None), "digest": (send_digest, undo_digest)}
    print(f"database: {connection.vendor}")
    print(f"{'cases':>8} {'what':<11} {'queries':>8} {'median ms':>10}")
    medians, queue_sql = {}, []
    for size in sorted(set(ARGS.sizes)):
        populate(size, clinicians[0])
        for name, (action, prepare) in tasks.items():
            count, medians[size, name], sql = measure(action, ARGS.runs, prepare)
            print(f"{size:>8} {name:<11} {count:>8} {medians[size, name]:>10.1f}")
            if name == "queue page":
                queue_sql = sql
    small, large = min(ARGS.sizes), max(ARGS.sizes)
    if large > small:
        print(f"\ntime with {large} cases / time with {small}, same run:")
        for name in tasks:
            print(f"{name:<11} {medians[large, name] / medians[small, name]:>6.2f}x")
    if connection.vendor == "postgresql":
        # The page's own query: the one that orders and cuts the queue (LIMIT), at the largest N.
        page_query = next(sql for sql in queue_sql if "ORDER BY" in sql and "LIMIT" in sql)
        print(f"\nEXPLAIN ANALYZE of the queue's page query, {large} cases:")
        print("\n".join(explain(page_query)))


if __name__ == "__main__":
    try:
        main()
    finally:
        connection.close()  # before the temporary folder goes (atexit), or the database is dropped
        if PG_NAME:
            drop_postgres_database(PG_NAME)
