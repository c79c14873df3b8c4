from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

app_name = "api"

router = SimpleRouter()
router.register("diagnoses", views.DiagnosisViewSet, basename="diagnosis")
router.register("moles", views.MoleViewSet, basename="mole")
router.register("staff-accesses", views.StaffAccessViewSet, basename="staff-access")
router.register("share-links", views.AllShareLinksViewSet, basename="all-share-link")

share_links = views.ShareLinkViewSet.as_view({"get": "list", "post": "create"})
share_link_revoke = views.ShareLinkViewSet.as_view({"post": "revoke"})

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="token"),
    path("account/", views.AccountView.as_view(), name="account"),
    path("diagnoses/<uuid:diagnosis_id>/share-links/", share_links, name="share-link-list"),
    path("diagnoses/<uuid:diagnosis_id>/share-links/<uuid:pk>/revoke/", share_link_revoke, name="share-link-revoke"),
    path("schema/", views.SchemaView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script (CSP).
    path("docs/", views.DocsView.as_view(url_name="api:schema"), name="docs"),
    *router.urls,
]
