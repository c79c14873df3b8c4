"""`python manage.py createreviewer [USERNAME] [--email E] [--password P | --noinput]`

Creates a staff account in the Reviewers group: it can work the review queue in /admin/ and
nothing else (no user administration, never a superuser).
"""

import getpass
import os

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from diagnoses import services

PASSWORD_ENV = "DJANGO_REVIEWER_PASSWORD"


class Command(BaseCommand):
    help = "Create a clinician account (staff, in the Reviewers group) for the review desk in /admin/."

    def add_arguments(self, parser):
        parser.add_argument("username", nargs="?", help="Login name; asked for when missing.")
        parser.add_argument("--email", default=None, help="E-mail address (optional).")
        parser.add_argument(
            "--password",
            default=None,
            help=f"Password. Prefer the {PASSWORD_ENV} environment variable or the prompt: "
            "a command-line argument shows in the process list and shell history.",
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help=f"Never prompt: USERNAME is required, the password comes from --password or {PASSWORD_ENV}.",
        )

    def handle(self, *args, username=None, email=None, password=None, interactive=True, **options):
        password = password or os.environ.get(PASSWORD_ENV) or None
        if not interactive and not (username and password):
            raise CommandError(f"With --noinput give USERNAME and a password (--password or {PASSWORD_ENV}).")
        username = self._username(username, interactive)
        email = self._email(email, interactive)
        password = self._password(username, email, password, interactive)
        user = services.reviewer_create(username=username, email=email, password=password)
        self.stdout.write(self.style.SUCCESS(f"Reviewer {user.get_username()!r} created; they can sign in at /admin/."))

    def _username(self, username, interactive):
        while True:
            if not username and interactive:
                username = input("Username: ").strip()
            if not username:
                raise CommandError("A username is required.")
            if not get_user_model().objects.filter(username=username).exists():
                return username
            message = f"A user named {username!r} already exists; add them to the Reviewers group in the user admin."
            if not interactive:
                raise CommandError(message)
            self.stderr.write(message)
            username = None

    def _email(self, email, interactive):
        if email is None and interactive:
            email = input("E-mail address (optional): ").strip()
        email = (email or "").strip()
        if email:
            try:
                # The column's own checks, as the admin's user page and createsuperuser run them:
                # a valid address, and one the site's e-mails reach as typed.
                get_user_model()._meta.get_field("email").clean(email, None)
            except ValidationError as error:
                problem = " ".join(error.messages)
                raise CommandError(f"{email!r} cannot be used: {problem}") from None
        return email

    def _password(self, username, email, password, interactive):
        user = get_user_model()(username=username, email=email)
        while True:
            if not password:
                if not interactive:
                    raise CommandError("A password is required.")
                password = getpass.getpass("Password: ")
                if password != getpass.getpass("Password (again): "):
                    self.stderr.write("The passwords did not match.")
                    password = None
                    continue
            try:
                validate_password(password, user)
            except ValidationError as error:
                if not interactive:
                    raise CommandError(" ".join(error.messages)) from None
                self.stderr.write("\n".join(error.messages))
                password = None
                continue
            return password
