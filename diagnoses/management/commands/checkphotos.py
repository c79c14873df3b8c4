"""`python manage.py checkphotos`

Runs the upload's photo check (too dark, too bright, out of focus, black and white:
ml.quality) on every stored photo and records what it finds. Needed once after upgrading from a
version without the check, whose photos would otherwise count as passed, and after a change of
its limits. It also reports rows whose photo, thumbnail or heatmap is missing from storage, and
files that no row names (`--delete-orphans` deletes those): the check to run after restoring a
backup.
"""

from django.core.management.base import BaseCommand
from django.template.defaultfilters import pluralize

from diagnoses import services


class Command(BaseCommand):
    help = ("Check every stored photo for darkness, overexposure, blur and lack of colour, and "
            "record the result; report photos, thumbnails and heatmaps missing from storage, and "
            "stored files that no check names.")

    def add_arguments(self, parser):
        parser.add_argument("--delete-orphans", action="store_true",
                            help="delete the stored files that no check names (over an hour old)")

    def handle(self, *args, **options):
        counts = services.diagnoses_check_photos()
        self.stdout.write(self.style.SUCCESS(
            f"{counts['checked']} photos checked, {counts['changed']} changed, "
            f"{counts['unreadable']} could not be read (see the log)."))
        missing = counts["missing"]
        if missing:
            self.stdout.write(self.style.WARNING(
                f"{missing} thumbnail{pluralize(missing)} or heatmap{pluralize(missing)} "
                f"{pluralize(missing, 'is,are')} missing from storage (see the log)."))
        orphans = len(services.orphaned_files(delete=options["delete_orphans"]))
        if orphans:
            done = "deleted" if options["delete_orphans"] else "not deleted: --delete-orphans deletes them"
            self.stdout.write(self.style.WARNING(
                f"{orphans} stored file{pluralize(orphans)} named by no check ({done}; see the log)."))
