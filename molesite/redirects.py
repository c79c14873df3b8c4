"""Where to go after a form: the page a `next` parameter names, when it is on this site."""

from django.utils.http import url_has_allowed_host_and_scheme


def safe_next_url(request, candidate, default):
    """candidate when it points at this site (so a crafted link cannot send a user elsewhere
    after signing in or submitting a form), else default."""
    if candidate and url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()},
                                                     require_https=request.is_secure()):
        return candidate
    return default
