"""The project's middleware: most of it must run before anything else looks at the request."""

import logging
import time

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils.cache import patch_cache_control

from diagnoses.api.errors import is_api_request
from diagnoses.images import megabytes

from . import health
from .logging import redact_link_tokens

request_logger = logging.getLogger("molesite.request")


def _too_large(request, limit: int):
    # The photo's own limit too, on the site and the API alike: a client told only the body's
    # limit would take it for the photo's and send one that the upload then refuses.
    message = (f"Request body too large: the limit is {megabytes(limit)}. "
               f"Photos must be at most {megabytes(settings.MAX_UPLOAD_BYTES)}.")
    if is_api_request(request):
        return JsonResponse({"detail": message}, status=413)
    return HttpResponse(f"{message}\n", status=413, content_type="text/plain; charset=utf-8")


def request_size_limit(get_response):
    """Refuse a request whose declared body exceeds MAX_REQUEST_BYTES, before Django reads it.

    Gunicorn has no body size limit and Django only bounds non-file fields
    (DATA_UPLOAD_MAX_MEMORY_SIZE), so without this a client could stream gigabytes to disk.
    """

    def middleware(request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0  # Django itself reads an unparseable length as an empty body.
        if length > settings.MAX_REQUEST_BYTES:
            return _too_large(request, settings.MAX_REQUEST_BYTES)
        return get_response(request)

    return middleware


def healthz(get_response):
    """Answer /healthz before host validation and the HTTPS redirect.

    Container runtimes and load balancers probe by IP address over plain HTTP, which
    ALLOWED_HOSTS and SECURE_SSL_REDIRECT would otherwise turn into 400 or 301.
    """

    def middleware(request):
        if request.path_info == "/healthz":
            return health.healthz(request)
        return get_response(request)

    return middleware


def _user_id(request):
    """The signed-in user's id (site session, or an API token: DRF passes its user down to the
    request), None otherwise. Static files are answered before there is a user at all."""
    try:
        user = getattr(request, "user", None)
        return user.pk if user is not None and user.is_authenticated else None
    except Exception:
        # The session could not be read (the database or cache is down): the request has
        # already failed on it, and its 500 must still be logged here and keep its headers.
        return None


def access_log(get_response):
    """One structured line per request (gunicorn's own access log is not structured). The user's
    id makes it an audit trail: who opened which result, photo or case. The token of a share link,
    a password-reset or an e-mail confirmation link is left out of the path
    (molesite.logging.redact_link_tokens)."""

    def middleware(request):
        started = time.monotonic()
        response = get_response(request)
        path = redact_link_tokens(request.path)
        request_logger.info(
            "%s %s %s",
            request.method,
            path,
            response.status_code,
            extra={
                "method": request.method,
                "path": path,
                "status": response.status_code,
                "duration_ms": round((time.monotonic() - started) * 1000, 1),
                "user_id": _user_id(request),
            },
        )
        return response

    return middleware


def no_store(get_response):
    """Tell browsers and proxies to keep no copy of a page, photo or API answer: on a shared or
    family computer, a result must not come back from the cache (Back after signing out, the
    disk cache) to whoever uses it next. A response that sets its own Cache-Control keeps it;
    static files, served by WhiteNoise above this, keep their long caching."""

    def middleware(request):
        response = get_response(request)
        if not response.has_header("Cache-Control"):
            patch_cache_control(response, private=True, no_store=True)
        return response

    return middleware
