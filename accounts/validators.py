"""The check on an e-mail address that the site will mail, on User.email. A model's validators
run only where something calls them: sign-up's form (a ModelForm over User), the admin's user
forms (the change page only when the address is changed: accounts.admin), createsuperuser,
createreviewer, and the manager's create_user() and create_superuser() (so the clinic's scripts
and services.reviewer_create() too: accounts.models.MolesiteUserManager). The password reset and
e-mail change forms, which save no User, add it to their own field. Nothing else does: save()
and queryset updates store what they are given."""

from email.errors import HeaderParseError

from django.core.exceptions import ValidationError
from django.core.mail.message import sanitize_address
from django.core.validators import validate_email
from django.utils.encoding import punycode

ADDRESS_NOT_SENT_AS_TYPED = (
    "Our e-mails would not reach this address as typed. Type it without quotation marks or "
    "=?…?= codes, and with no accented or non-Latin letters before the @."
)


def envelope_address(address: str) -> str:
    """The address as Django's mailer hands it to the mail server: encoded words (=?…?=) decoded
    and quotes dropped, a non-ASCII local part encoded, the domain in punycode. ValueError when
    it cannot be sent at all."""
    try:
        return sanitize_address(address, "utf-8")
    except (IndexError, HeaderParseError) as error:
        # The header parser's own failures: "=?utf-8?b?####?="@x.org, which Django's check takes,
        # raises IndexError.
        raise ValueError(f"Invalid address {address!r}") from error


def validate_address_sent_as_typed(address: str) -> None:
    """Refuses an address the mailer would send to another mailbox than the one typed. Django's
    check takes "=?utf-8?q?bob?="@x.org, which the mailer sends to bob@x.org: the hourly limit on
    link e-mails (accounts.views.link_email_allowed) would count it apart from bob@x.org, and a
    notice meant for it would reach bob. A domain in punycode is the same mailbox, and passes. No
    local part with an encoded word's "=?" either, even one sent as typed: a mail server may
    decode it."""
    if not _is_valid_email(address):
        return  # validate_email, on every e-mail field too, says what is wrong: one message
    local, _, domain = address.rpartition("@")
    try:
        as_typed = envelope_address(address) == f"{local}@{punycode(domain)}"
    except ValueError:  # UnicodeError (a domain punycode refuses) included
        as_typed = False
    if not as_typed or "=?" in local:
        raise ValidationError(ADDRESS_NOT_SENT_AS_TYPED, code="address_not_sent_as_typed")


def _is_valid_email(address: str) -> bool:
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True
