"""E-mails written as templates: the site's and the worker's, one way."""

from django.core.mail import send_mail
from django.template.loader import render_to_string


def send_templated_mail(template: str, context: dict, to: str) -> None:
    """<template>_subject.txt and <template>.txt, rendered with context and sent to one address.
    The subject is folded onto one line: a newline from the template would break the header."""
    subject = " ".join(render_to_string(f"{template}_subject.txt", context).split())
    send_mail(subject, render_to_string(f"{template}.txt", context), None, [to])
