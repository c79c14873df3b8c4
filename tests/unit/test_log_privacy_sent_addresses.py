"""Addresses as the mailer sends them, and as the mail server's refusal then names them, are kept
out of the log: an internationalised domain in punycode (ivan@пример.рф goes out as
ivan@xn--e1afmkfd.xn--p1ai), a non-ASCII local part as an encoded word (ſam@… goes out as
=?utf-8?q?=C5=BFam?=@…), quoted as an old row or another program may write it."""

import copy
import logging.config
import smtplib
import sys

import pytest
from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend

IDN = "ivan@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444"
LONG_S = "\u017fam@example.com"


def formatter(name):
    # a copy: configuring a formatter pops its "()" from the dict it is given
    return logging.config.DictConfigurator(settings.LOGGING).configure_formatter(
        copy.deepcopy(settings.LOGGING["formatters"][name]))


class RefusingSMTP:
    """A mail server that refuses every recipient, naming each as it was sent (the envelope)."""

    def __init__(self, *args, **kwargs):
        pass

    def sendmail(self, from_addr, to_addrs, msg, *args, **kwargs):
        raise smtplib.SMTPRecipientsRefused({to: (550, f"5.1.1 <{to}>: no such user".encode())
                                             for to in to_addrs})

    def quit(self):
        pass

    def close(self):
        pass


def refusal_record(address, monkeypatch) -> tuple[logging.LogRecord, str]:
    """The log record of a send to address that the mail server refused, and the address as
    the refusal names it."""
    monkeypatch.setattr(smtplib, "SMTP", RefusingSMTP)
    try:
        EmailMessage("s", "b", "noreply@localhost", [address],
                     connection=EmailBackend(host="mail.invalid", port=25)).send()
    except smtplib.SMTPRecipientsRefused as refusal:
        (sent_as,) = refusal.recipients
        record = logging.LogRecord("accounts.views", logging.ERROR, "", 0, "could not send the %s e-mail",
                                   ("address_confirm",), sys.exc_info())
        return record, sent_as
    raise AssertionError("the mail server did not refuse")


@pytest.mark.parametrize("name", ["plain", "json"])
@pytest.mark.parametrize("address, sent_as", [(IDN, "ivan@xn--e1afmkfd.xn--p1ai"),
                                              (LONG_S, "=?utf-8?q?=C5=BFam?=@example.com")])
def test_no_log_line_holds_an_address_as_the_mailer_sent_it(name, address, sent_as, monkeypatch):
    record, refused = refusal_record(address, monkeypatch)
    assert refused == sent_as  # the envelope's form, as the refusal names it

    line = formatter(name).format(record)

    assert sent_as not in line and "<e-mail>" in line and "SMTPRecipientsRefused" in line


@pytest.mark.parametrize("name", ["plain", "json"])
@pytest.mark.parametrize("address", ['"=?utf-8?q?victim?="@example.com', "=?utf-8?b?dmljdGlt?=@example.com",
                                     "ivan@XN--E1AFMKFD.XN--P1AI", "bob@mail.xn--80ak6aa92e.com"])
def test_no_log_line_holds_an_encoded_or_punycode_address_written_out(name, address):
    record = logging.LogRecord("third.party", logging.INFO, "", 0, "bounced: %s, %r", (address, address), None)

    line = formatter(name).format(record)

    assert not any(part in line for part in ["victim", "dmljdGlt", "ivan", "bob"])
    assert line.count("<e-mail>") == 2
