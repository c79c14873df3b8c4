"""The REST API under /api/v1/: the patient's site for mobile and third-party clients.

Thin views over diagnoses.services; every queryset is the requesting user's own.
"""
