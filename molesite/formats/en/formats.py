"""Dates as the whole site writes them, patient pages and clinicians' admin alike:
"3 Dec 2026" and "3 Dec 2026, 07:29" (24-hour clock), not Django's English "Dec. 3, 2026,
7:29 a.m.". Templates use these by name (`|date`, `|date:"DATETIME_FORMAT"`); formats not
set here (input formats, first day of week) fall back to Django's English ones."""

DATE_FORMAT = "j M Y"
DATETIME_FORMAT = "j M Y, H:i"
TIME_FORMAT = "H:i"
SHORT_DATE_FORMAT = "j M Y"
SHORT_DATETIME_FORMAT = "j M Y, H:i"
MONTH_DAY_FORMAT = "j F"
YEAR_MONTH_FORMAT = "F Y"
