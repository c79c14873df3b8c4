"""Django's error handlers (handler400/403/404/500 in molesite/urls.py, CSRF_FAILURE_VIEW): JSON
under /api/, the usual pages elsewhere.

DRF already answers its own errors in JSON; these cover what happens outside a DRF view: an
unknown /api/ path, an uncaught exception, a request Django refuses before any view runs.
api_exception_handler is DRF's own (REST_FRAMEWORK's EXCEPTION_HANDLER), for inside its views.
"""

import logging

from django.http import Http404, HttpResponseServerError, JsonResponse
from django.middleware.csrf import REASON_NO_CSRF_COOKIE
from django.shortcuts import render
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.views import exception_handler

API_PREFIX = "/api/"

logger = logging.getLogger(__name__)


def is_api_request(request):
    return request.path_info.startswith(API_PREFIX)


def bad_request(request, exception, template_name=defaults.ERROR_400_TEMPLATE_NAME):
    if is_api_request(request):
        return JsonResponse({"detail": "Bad request."}, status=400)
    return defaults.bad_request(request, exception, template_name)


def permission_denied(request, exception, template_name=defaults.ERROR_403_TEMPLATE_NAME):
    if is_api_request(request):
        return JsonResponse({"detail": "You do not have permission to perform this action."}, status=403)
    return defaults.permission_denied(request, exception, template_name)


def csrf_failure(request, reason=""):
    """settings.CSRF_FAILURE_VIEW: a form sent from a page left open across a sign-in or sign-out
    (which rotates the CSRF token) gets the site's page saying to reload and try again, not
    Django's bare one. DRF's views check CSRF themselves and answer their own JSON 403."""
    if is_api_request(request):
        return JsonResponse({"detail": f"CSRF check failed: {reason}"}, status=403)
    context = {"cookies_blocked": reason == REASON_NO_CSRF_COOKIE}
    return render(request, "403_csrf.html", context, status=403)


def page_not_found(request, exception, template_name=defaults.ERROR_404_TEMPLATE_NAME):
    if is_api_request(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception, template_name)


def api_exception_handler(exc, context):
    """DRF's handler, but a Django Http404 answers DRF's "Not found.", as an unknown path and an
    id that is not a UUID do: DRF passes on get_object_or_404's message, "No Diagnosis matches
    the given query.", which names the model and differs from one endpoint to the next."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    return exception_handler(exc, context)


@csrf_exempt  # it only ever answers 404: checked, a POST would get Django's CSRF page (HTML)
def unknown_api_path(request):
    return page_not_found(request, exception=None)


# The 500 page when the site's own cannot be rendered either: titled as it is headed, in the
# form of every page's title (base.html: "<heading> · molesite"), as templates/500.html is.
BARE_SERVER_ERROR_PAGE = (
    "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
    "<title>Something went wrong on our side · molesite</title></head>"
    "<body><h1>Something went wrong on our side</h1>"
    "<p>The team has been told. Please try again in a moment.</p>"
    "<p><a href=\"/\">Go to the start page</a></p></body></html>"
)


def server_error(request, template_name=defaults.ERROR_500_TEMPLATE_NAME):
    if is_api_request(request):
        return JsonResponse({"detail": "A server error occurred."}, status=500)
    try:
        return defaults.server_error(request, template_name)
    except Exception:
        # The page's template failed too, e.g. a stylesheet missing from STATIC_ROOT when
        # collectstatic was not run (deploy check molesite.W003): without this the server's
        # bare error would answer, past the access log and the security headers.
        logger.exception("the 500 page could not be rendered")
        return HttpResponseServerError(BARE_SERVER_ERROR_PAGE)
