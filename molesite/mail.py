"""E-mails written as templates: the site's and the worker's, one way. The password reset's is
rendered by Django's form (accounts.forms.QueuedPasswordResetForm), its subject by
render_subject, and sent by the worker (accounts.tasks)."""

import logging
import smtplib
from contextlib import contextmanager
from contextvars import ContextVar

from django.core.mail import get_connection, send_mail
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

# The connection to the mail server that the e-mails sent within one_connection() share.
_shared_connection = ContextVar("shared_mail_connection", default=None)


def render_subject(template_name: str, context: dict) -> str:
    """The subject template rendered and folded onto one line: a newline from the template would
    break the header."""
    return " ".join(render_to_string(template_name, context).split())


def send_templated_mail(template: str, context: dict, to: str) -> None:
    """<template>_subject.txt and <template>.txt, rendered with context and sent to one address."""
    subject = render_subject(f"{template}_subject.txt", context)
    body = render_to_string(f"{template}.txt", context)
    shared = _shared_connection.get()
    if shared is None:
        send_mail(subject, body, None, [to])
        return
    try:
        # Opened by the first e-mail; the others find it open (open() is False: left as it is).
        reused = shared.open() is False
        try:
            send_mail(subject, body, None, [to], connection=shared)
        except smtplib.SMTPServerDisconnected:
            if not reused:
                raise
            # The server closed the session kept open (idle time, a limit of e-mails a
            # session): a fresh connection, as this e-mail would have had on its own.
            _close_quietly(shared)
            shared.open()
            send_mail(subject, body, None, [to], connection=shared)
    except Exception:
        # The next e-mail connects afresh, as each did on a connection of its own: none goes
        # over a connection that this failure may have left broken.
        _close_quietly(shared)
        raise


@contextmanager
def one_connection():
    """The e-mails sent within share one connection to the mail server, opened by the first and
    closed at the end, instead of one each (with its set-up: TLS, login): a daily batch runs on
    the single worker, and the photos queued behind it wait for it. Each e-mail still fails on
    its own, as send_templated_mail raises it."""
    connection = get_connection()
    token = _shared_connection.set(connection)
    try:
        yield
    finally:
        _shared_connection.reset(token)
        _close_quietly(connection)


def _close_quietly(connection) -> None:
    """Each e-mail on the connection was sent, or has failed, already: an error in closing it (a
    server slow to answer QUIT, a connection already broken) is logged, not raised as theirs."""
    try:
        connection.close()
    except Exception:
        logger.warning("closing the connection to the mail server failed", exc_info=True)
