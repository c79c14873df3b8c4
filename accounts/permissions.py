"""API permissions of accounts."""

from rest_framework.permissions import BasePermission


class AgreedToPrivacyNotice(BasePermission):
    """Refuses a patient whose account lacks the agreement to the privacy notice
    (User.needs_privacy_agreement): the API's counterpart of accounts.middleware."""

    message = ("Agree to the privacy notice first: sign in on the site, which asks for it. "
               "Until then the API answers nothing but the revocation of your token.")
    code = "privacy_agreement_required"

    def has_permission(self, request, view):
        user = request.user
        return not (user and user.is_authenticated and user.needs_privacy_agreement)
