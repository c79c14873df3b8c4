from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """The project's user from the first migration, so it can grow without a painful swap."""

    review_emails = models.BooleanField(
        "E-mail me when a clinician has reviewed one of my checks",
        default=True,
        help_text="The e-mail only says that a review is waiting, with a link; what the clinician "
        "wrote is shown after you sign in.",
    )
