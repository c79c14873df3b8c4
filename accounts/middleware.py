"""Keeps a patient who has not agreed to the privacy notice to the pages that ask for it."""

from urllib.parse import urlencode

from django.shortcuts import redirect
from django.urls import reverse

from diagnoses.api.errors import is_api_request

# What such a patient may still open: the agreement and the notice itself, signing out, and
# taking their data away (download, deletion); a report someone else shared is not their data.
# The API answers for itself (accounts.permissions.AgreedToPrivacyNotice), as does the admin,
# whose users are staff, who are not asked.
OPEN_WITHOUT_AGREEMENT = frozenset({
    "agree", "privacy", "logout", "account_export", "account_delete",
    "shared_report", "shared_file", "shared_earlier_photo",
})


class PrivacyAgreementMiddleware:
    """Sends a signed-in patient whose account lacks the agreement (User.needs_privacy_agreement)
    from any other page to /accounts/agree/, with the page asked for as `next` when it was a GET.
    Without it, a patient asked at sign-in could click past the page, or stay signed in from
    before the site asked, and go on uploading photos."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        user = request.user
        if not (user.is_authenticated and user.needs_privacy_agreement):
            return None
        match = request.resolver_match
        if match.url_name in OPEN_WITHOUT_AGREEMENT or "admin" in match.namespaces or is_api_request(request):
            return None
        url = reverse("agree")
        if request.method == "GET":
            url += "?" + urlencode({"next": request.get_full_path()})
        return redirect(url)
