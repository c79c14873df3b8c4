"""The log's formatters (see LOGGING in settings): plain lines, or one JSON object per line for
production logs on stdout. Both leave share links' tokens out of every line."""

import json
import logging
import re
from datetime import datetime, timezone

# A share link's token opens a patient's report (/shared/<token>/): a log line keeps the place,
# never the value, whichever logger wrote it (runserver's request lines, django.request's
# "Not Found" and "Gone" warnings, the request object that rides along as an extra).
SHARED_TOKEN = re.compile(r"/shared/[^/\s'\"]+/")


def redact_share_tokens(text: str) -> str:
    return SHARED_TOKEN.sub("/shared/<token>/", text)

# Attributes every LogRecord has; anything else was passed with `extra=` and is kept.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact_share_tokens(super().format(record))


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
        return redact_share_tokens(json.dumps(entry, default=str))
