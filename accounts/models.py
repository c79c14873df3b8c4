import logging
from importlib import import_module

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models, transaction
from django.utils import timezone
from rest_framework.authtoken.models import TokenProxy

from .validators import validate_address_sent_as_typed

logger = logging.getLogger(__name__)

# The clinicians who work the review queue (made, with its permissions, by diagnoses.services).
REVIEWERS_GROUP = "Reviewers"


def sign_ins_end(user_pks) -> None:
    """Ends the API tokens and every browser session of these users: on deactivation, so that
    none works again if the account is reactivated (the clinic may reopen it for its patient, and
    a session or token taken before, perhaps with a leaked password, must not come back with it).
    Sessions are found in the session store's table (Django's db and cached_db engines), read
    one by one: a deactivation is rare, and the night's clearsessions keeps the table to the
    sign-ins of the last SESSION_HOURS."""
    from django.contrib.auth import SESSION_KEY
    from rest_framework.authtoken.models import Token

    user_pks = {str(pk) for pk in user_pks}
    if not user_pks:
        return
    Token.objects.filter(user__in=user_pks).delete()
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if not hasattr(store, "get_model_class"):  # a cache, file or cookie engine: no table to read
        logger.warning("the sessions of deactivated users %s were not ended: %s keeps no table of them",
                       sorted(user_pks), settings.SESSION_ENGINE)
        return
    for session in store.get_model_class().objects.filter(expire_date__gt=timezone.now()).iterator():
        if str(store().decode(session.session_data).get(SESSION_KEY)) in user_pks:
            store(session_key=session.session_key).delete()


class UserQuerySet(models.QuerySet):
    def update(self, **kwargs):
        """A deactivation by update() (a script's, bulk_update()'s) ends the users' sign-ins, as
        save()'s does."""
        if "is_active" not in kwargs or kwargs["is_active"] is True:
            return super().update(**kwargs)
        with transaction.atomic(using=self.db):
            active = list(self.filter(is_active=True).values_list("pk", flat=True))
            count = super().update(**kwargs)
            # the value may be an expression (bulk_update's Case): read what it came to
            sign_ins_end(self.model._default_manager.using(self.db).filter(pk__in=active, is_active=False)
                         .values_list("pk", flat=True))
        return count

    def reviewers(self):
        """Staff in the Reviewers group: who work the review queue."""
        return self.filter(is_staff=True, groups__name=REVIEWERS_GROUP).distinct()

    def reachable_by_email(self):
        """Active accounts with a confirmed address: the only ones the site e-mails (review
        notices, photo reminders, the review queue's count, password resets). An address typed
        at sign-up may be someone else's: it gets nothing until the link sent to it is opened."""
        return self.filter(is_active=True, email_confirmed_at__isnull=False).exclude(email="")


class MolesiteUserManager(UserManager.from_queryset(UserQuerySet)):
    def _create_user_object(self, username, email, password, **extra_fields):
        # create_user() and create_superuser() serve the clinic's own tools (createsuperuser,
        # make reviewer, scripts), whose address is taken as confirmed. Sign-up, where anyone
        # types an address, saves its form instead and leaves it to the link (accounts.views).
        if email:
            extra_fields.setdefault("email_confirmed_at", timezone.now())
        user = super()._create_user_object(username, email, password, **extra_fields)
        # The column's own checks, which no manager runs: a valid address (Django's) that the
        # site's e-mails reach as typed (accounts.validators, which leaves an invalid one to the
        # first), for a script's or reviewer_create()'s address as for sign-up's and the admin's.
        # ValidationError, as full_clean() raises: createsuperuser reports it as its own. An empty
        # address, allowed, is not checked.
        user._meta.get_field("email").run_validators(user.email)
        return user


class User(AbstractUser):
    """The project's user from the first migration, so it can grow without a painful swap."""

    # Django's field, plus the check that the site's e-mails reach the address as typed: run by
    # sign-up's form, the admin's user forms, createsuperuser, createreviewer and create_user()
    # (not by save(): see accounts.validators).
    email = models.EmailField("email address", blank=True,
                              validators=[validate_address_sent_as_typed])

    review_emails = models.BooleanField(
        "E-mail me when a clinician has reviewed one of my checks",
        default=True,
        help_text="The e-mail only says that a review is waiting, with a link; what the clinician "
        "wrote is shown after you sign in.",
    )
    # "each day", as the e-mail says: it goes out at DAILY_EMAILS_HOUR, which may be any hour.
    queue_emails = models.BooleanField(
        "E-mail me each day how many cases wait for review",
        default=True,
        help_text="For clinicians at the review desk: counts by risk and a link to the queue, no patient data.",
    )
    # The day that e-mail last went out: claimed before sending, so that no run, retry or
    # redelivered task tells a clinician twice in a day (diagnoses.services.review_queue_digest_send).
    queue_email_sent_on = models.DateField(null=True, blank=True, editable=False)

    # Opt-in: a use beyond the patient's own care needs its own consent, given apart from the
    # privacy notice's agreement and never assumed (at sign-up, or later on the account page).
    model_improvement = models.BooleanField(
        "Include my reviewed checks in the table used to improve the model",
        default=False,
        help_text="Clinicians export the checks they reviewed, without names, e-mail addresses, mole names "
        "or notes, to measure the model on the clinic's photos and train better ones.",
    )

    # When the patient ticked the sign-up box agreeing to the privacy notice (templates/privacy.html):
    # photos and results are health data. Null for accounts made another way (staff, scripts).
    consented_at = models.DateTimeField("agreed to the privacy notice", null=True, blank=True, editable=False)

    # When the address was shown to be the account holder's: its link opened while signed in
    # (sign-up's or an e-mail change's), or set by the clinic (create_user, the admin). Null
    # while unconfirmed: see UserQuerySet.reachable_by_email.
    email_confirmed_at = models.DateTimeField("e-mail address confirmed", null=True, blank=True,
                                              editable=False)

    # The latest e-mail change asked for and not confirmed yet: the token of the link sent to the
    # new address (accounts.views.email_change_token, which holds that address) and when it went
    # out, so that the account page, on any device, says a change waits while that link works
    # (accounts.views.pending_email_change). A newer request replaces them; confirming clears them.
    email_change_token = models.TextField(blank=True, editable=False)
    email_change_sent_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = MolesiteUserManager()

    @property
    def needs_privacy_agreement(self) -> bool:
        """A patient whose account was made without agreeing to the privacy notice (before sign-up
        asked for it, or by an administrator): until they agree, the site shows them only the
        agreement, the notice, their data download and account deletion (accounts.middleware),
        and the API refuses them (accounts.permissions). Staff are not asked."""
        return not self.is_staff and self.consented_at is None

    @property
    def is_reviewer(self) -> bool:
        return type(self).objects.reviewers().filter(pk=self.pk).exists()

    # Set by set_unusable_password(), which leaves Django's _password unset: no password signs in
    # any more (the admin's "Password-based authentication: Disabled"), so the token ends too.
    _password_disabled = False

    def set_unusable_password(self):
        super().set_unusable_password()
        self._password_disabled = True

    def save(self, *args, **kwargs):
        # set_password() or set_unusable_password() was called
        password_changed = self._password is not None or self._password_disabled
        update_fields = kwargs.get("update_fields")
        # Deactivated by this save (in the admin, a script): read from the database, whatever
        # this instance was loaded with.
        deactivated = (not self.is_active and self.pk is not None
                       and (update_fields is None or "is_active" in update_fields)
                       and type(self).objects.filter(pk=self.pk, is_active=True).exists())
        super().save(*args, **kwargs)
        if password_changed:
            self._password_disabled = False
            self.api_tokens_revoke()
        if deactivated:
            sign_ins_end([self.pk])

    def api_tokens_revoke(self):
        """A new password (changed, reset by e-mail, or set by an administrator), or none at all
        (password sign-in disabled by an administrator), ends the user's API token: a token taken
        with a leaked password must not outlive that password, as Django already makes the other
        browser sessions end."""
        from rest_framework.authtoken.models import Token

        Token.objects.filter(user=self).delete()


class ApiToken(TokenProxy):
    """A patient's API token as the admin shows it: named by its user, never by its key (DRF's
    Token prints its key, a working credential, into page titles and the admin's history)."""

    class Meta:
        proxy = True
        verbose_name = "API token"

    def __str__(self):
        return f"API token of {self.user}"
