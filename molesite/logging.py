"""The log's formatters (see LOGGING in settings): plain lines, or one JSON object per line for
production logs on stdout. Both leave the tokens of share links, password-reset links and e-mail
confirmation links, and every e-mail address, out of every line."""

import json
import logging
import re
from datetime import datetime, timezone

# A share link's token opens a patient's report (/shared/<token>/): a log line keeps the place,
# never the value, whichever logger wrote it (runserver's request lines, django.request's
# "Not Found" and "Gone" warnings, the request object that rides along as an extra). The token
# ends at the next "/", or wherever the path ends: /shared/<token> without its slash is
# requested too (CommonMiddleware answers it with a redirect).
_SEGMENT = r"[^/\s'\"?#]+"
SHARED_TOKEN = re.compile(rf"/shared/{_SEGMENT}")
# A password-reset link (/accounts/password/reset/<uidb64>/<token>/) sets the account's password
# until it is used. Its first opening reaches the log; Django then keeps the token in the session
# and redirects to .../<uidb64>/set-password/, which says nothing and is kept.
PASSWORD_RESET_TOKEN = re.compile(rf"(/password/reset/{_SEGMENT}/)({_SEGMENT})")
# An e-mail change's confirmation link (/accounts/email/confirm/<token>/) changes the address;
# its signed token also spells out the old and the new address.
EMAIL_CONFIRM_TOKEN = re.compile(rf"/email/confirm/{_SEGMENT}")


# An e-mail address is personal data no log line needs, yet one gets in: a mail server's refusal
# (smtplib's SMTPRecipientsRefused, an OSError the e-mail tasks retry) spells the address out in
# its message and traceback, and Celery repeats it on every retry line. Each part is bounded
# (as addresses are), so that a long run of letters in a requested path costs linear time; the
# domain ends in letters, so "postgres@127.0.0.1" is kept, and a Celery worker's name
# (celery@host.example) is too.
# Not the quote, "=", "/" or braces an address may hold: a log line's repr('bob@x.org'), a
# query's email=bob@x.org, a path's /bob@x.org keep them outside what is redacted.
_LOCAL_CHARS = r"[\w.!#$%&*+?^`|~-]"
# Django's mailer sends a local part with a non-ASCII letter as one RFC 2047 encoded word
# ("ſam@x.org" goes out as =?utf-8?q?=C5=BFam?=@x.org), which the mail server's refusal repeats;
# an old row or another program's line may have it quoted ("=?utf-8?q?sam?="@x.org), the
# quotes escaped in a JSON line.
_QUOTE = r'(?:\\?")?'
_ENCODED_LOCAL = rf"{_QUOTE}=\?[\w.-]{{1,40}}\?[bBqQ]\?[^?\s]{{1,200}}\?={_QUOTE}"
# An internationalised domain goes out in punycode: its top-level label can be xn--p1ai (.рф).
_TOP_LABEL = r"(?:[^\W\d_]{2,63}|[xX][nN]--[a-zA-Z0-9-]{1,59})"
EMAIL_ADDRESS = re.compile(
    rf"(?<!{_LOCAL_CHARS})(?!celery@)(?:{_ENCODED_LOCAL}|{_LOCAL_CHARS}{{1,64}})"
    rf"@[\w-]{{1,63}}(?:\.[\w-]{{1,63}})*\.{_TOP_LABEL}(?![\w-])")


def _redact_reset_token(match: re.Match) -> str:
    return match[0] if match[2] == "set-password" else f"{match[1]}<token>"


def redact_link_tokens(text: str) -> str:
    text = SHARED_TOKEN.sub("/shared/<token>", text)
    text = EMAIL_CONFIRM_TOKEN.sub("/email/confirm/<token>", text)
    return PASSWORD_RESET_TOKEN.sub(_redact_reset_token, text)


def redact_line(text: str) -> str:
    """A finished log line without link tokens or e-mail addresses."""
    return EMAIL_ADDRESS.sub("<e-mail>", redact_link_tokens(text))


# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_line(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ensure_ascii off: an address with a non-ASCII letter is redacted as it reads, not
        # missed as its \u escape; the line is UTF-8 as Python's stdout writes it.
        return redact_line(json.dumps(entry, default=str, ensure_ascii=False))
