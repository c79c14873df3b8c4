"""Rate limits, kept in the cache (Redis when REDIS_URL is set). The upload limit is one count
per patient for the site's upload form and the API together, so neither is a way round the
other.

A cache that cannot be reached (Redis down, refusing connections, or silent for 2 seconds) lets
every request through: a limit that fails closed would turn the outage into errors on every
upload, shared report and token request, and an upload refused with a 500 loses the patient's
photo, which the upload itself would store and queue for when the broker is back
(services._send_classification)."""

import logging
import math

from django.shortcuts import render
from redis.exceptions import RedisError
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

logger = logging.getLogger(__name__)

# What a cache backend raises when its server is unreachable: redis-py's errors (not OSErrors),
# and socket or file errors from the others.
CACHE_DOWN = (RedisError, OSError)


class SettingsRateMixin:
    """Read the rate when the request comes, not at import (DRF's default), so that a changed
    REST_FRAMEWORK setting (API_UPLOAD_RATE, a test's override) applies. Fails open when the
    cache is down (see the module's docstring), with one WARNING per request."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]

    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except CACHE_DOWN as exc:
            logger.warning("%s rate limit not applied: the cache is unreachable (%s: %s)", self.scope,
                           type(exc).__name__, exc)
            return True


class UploadRateThrottle(SettingsRateMixin, UserRateThrottle):
    """Photo uploads per user (API_UPLOAD_RATE). Works on a Django request as on DRF's: it reads
    only request.user, who is signed in on both upload paths."""

    scope = "uploads"


class PerAddressRateThrottle(SettingsRateMixin, SimpleRateThrottle):
    """Counts every request per client address, whoever is signed in or not. Not DRF's
    AnonRateThrottle: that one lets through any request that carries a valid token or session."""

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class TokenRateThrottle(PerAddressRateThrottle):
    """Password sign-ins per client address (API_TOKEN_RATE), one count for token requests (POST
    /api/v1/auth/token/), the site's sign-in page and the admin's (accounts.forms.SignInRateMixin):
    a signed-in client guessing other users' passwords is counted too."""

    scope = "token"


class SharedReportRateThrottle(PerAddressRateThrottle):
    """Openings of /shared/<token>/ per client address (SHARED_REPORT_RATE), known token or not,
    and the requests for a shared report's images (photo, heatmap, earlier photos) with a token
    that opens no report (unknown, expired, withdrawn): trying tokens costs the same on any
    path. Works on a Django request: it reads only request.META."""

    scope = "shared"

    def refusal(self, request):
        """None when the request is allowed (and counted); else the shared pages' 429 answer,
        with Retry-After."""
        if self.allow_request(request, None):
            return None
        retry_after = max(1, math.ceil(self.wait() or 1))
        response = render(request, "diagnoses/shared_gone.html",
                          {"retry_minutes": math.ceil(retry_after / 60)}, status=429)
        response["Retry-After"] = str(retry_after)
        return response


# A report page asks for its photo, its heatmap and, when shared with them, the mole's earlier
# photos: the images an address may fetch are this many times the reports it may open, so a
# page loads whole even with dozens of earlier photos, while its images are still counted.
SHARED_FILES_PER_OPENING = 10


class SharedFileRateThrottle(SharedReportRateThrottle):
    """The images of shared reports whose link works, per client address: a count of their own,
    SHARED_FILES_PER_OPENING times SHARED_REPORT_RATE, apart from the openings."""

    cache_format = "throttle_%(scope)s_files_%(ident)s"

    def parse_rate(self, rate):
        num_requests, duration = super().parse_rate(rate)
        return (None if num_requests is None else num_requests * SHARED_FILES_PER_OPENING), duration
