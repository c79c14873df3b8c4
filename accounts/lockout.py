"""Sign-in lockout (django-axes): who is asking, and what they are told when refused.

After AXES_FAILURE_LIMIT wrong passwords for one username from one client address, that pair
is refused for AXES_COOLOFF_TIME, on the sign-in page, the admin's and the API's token endpoint
alike. Axes records the failures in the database, so every web process sees the same count.
"""

import math

from axes.helpers import get_client_username, get_cool_off, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.http import JsonResponse
from django.shortcuts import render
from django.utils import timezone
from rest_framework.throttling import BaseThrottle

from diagnoses.api.errors import is_api_request


def client_ip(request):
    """The client's address, as the API's throttles see it: REMOTE_ADDR, or behind the trusted
    proxy (BEHIND_PROXY) the address that proxy appended to X-Forwarded-For, never one a client
    wrote there itself."""
    return BaseThrottle().get_ident(request)


# AccessAttempt.username's length: a longer username (nothing stops one at the sign-in form or
# the API's token endpoint) would fail the insert on Postgres, a 500 for a wrong password.
USERNAME_KEPT = 255


def attempted_username(request, credentials=None):
    """settings.AXES_USERNAME_CALLABLE: the username a sign-in tried, as axes reads it by default
    (the credentials, else the form or the API's body), cut to USERNAME_KEPT characters."""
    if credentials:
        username = credentials.get(settings.AXES_USERNAME_FORM_FIELD)
    else:
        username = getattr(request, "data", request.POST).get(settings.AXES_USERNAME_FORM_FIELD)
    return username[:USERNAME_KEPT] if isinstance(username, str) else username


def seconds_until_unlocked(request, credentials=None) -> int:
    """Seconds until the lock on this username and address ends, as axes decides it: the pair is
    locked while the failures of its rows within the cool-off (a row per user agent, dated by its
    last failure) add up to AXES_FAILURE_LIMIT. So the lock ends when the newest rows that reach
    the limit leave the cool-off, which can be sooner than a cool-off after the newest failure.
    Failures while locked are not recorded, so retrying does not extend it."""
    cool_off, limit = get_cool_off(request), get_failure_limit(request, credentials)
    now = timezone.now()
    rows = AccessAttempt.objects.filter(
        username=get_client_username(request, credentials), ip_address=client_ip(request),
        attempt_time__gte=now - cool_off,
    ).order_by("-attempt_time").values_list("attempt_time", "failures_since_start")
    failures = 0
    for attempt_time, row_failures in rows:
        failures += row_failures
        if failures >= limit:
            return max(1, math.ceil((attempt_time + cool_off - now).total_seconds()))
    return math.ceil(cool_off.total_seconds())  # too few recorded to lock: the whole cool-off


def lockout_response(request, original_response=None, credentials=None):
    """429 with Retry-After: JSON under /api/, a page elsewhere (for a signed-in user, the account
    form's pause)."""
    seconds = seconds_until_unlocked(request, credentials)
    minutes = max(1, math.ceil(seconds / 60))
    wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
    if is_api_request(request):
        response = JsonResponse(
            {"detail": f"Too many failed sign-ins for this username from your address: try again in {wait}."},
            status=429,
        )
    elif getattr(getattr(request, "user", None), "is_authenticated", False):
        # A signed-in user mistyped the current password on an account form (is_current_password):
        # no "sign-in paused" for them, and a way back to the account page.
        response = render(request, "accounts/form_paused.html", {"wait": wait}, status=429)
    else:
        response = render(request, "registration/locked_out.html", {"wait": wait}, status=429)
    response["Retry-After"] = str(seconds)
    return response
