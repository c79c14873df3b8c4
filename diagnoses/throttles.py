"""Rate limits, kept in the cache (Redis when REDIS_URL is set). The upload limit is one count
per patient for the site's upload form and the API together, so neither is a way round the
other."""

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle


class SettingsRateMixin:
    """Read the rate when the request comes, not at import (DRF's default), so that a changed
    REST_FRAMEWORK setting (API_UPLOAD_RATE, a test's override) applies."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES[self.scope]


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
    """Token requests (POST /api/v1/auth/token/) per client address (API_TOKEN_RATE): a signed-in
    client guessing other users' passwords is counted too."""

    scope = "token"


class SharedReportRateThrottle(PerAddressRateThrottle):
    """Openings of /shared/<token>/ per client address (SHARED_REPORT_RATE), known token or not.
    Works on a Django request: it reads only request.META."""

    scope = "shared"
