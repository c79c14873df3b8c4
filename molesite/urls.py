from django.contrib import admin
from django.urls import include, path, re_path

from diagnoses import views as diagnosis_views
from diagnoses.api import errors as api_errors

urlpatterns = [
    path("", diagnosis_views.home, name="home"),
    path("accounts/", include("accounts.urls")),
    path("diagnoses/", include("diagnoses.urls")),
    path("about/model/", diagnosis_views.about_model, name="about_model"),
    path("privacy/", diagnosis_views.privacy, name="privacy"),
    # A report a patient shares with a doctor: no sign-in, the link's token is the key.
    path("shared/<str:token>/", diagnosis_views.shared_report, name="shared_report"),
    path("shared/<str:token>/files/<str:kind>/", diagnosis_views.shared_file, name="shared_file"),
    path("shared/<str:token>/earlier/<uuid:pk>/", diagnosis_views.shared_earlier_photo, name="shared_earlier_photo"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("diagnoses.api.urls")),
    # Any other /api/ path: a JSON 404 even with DEBUG on (whose 404 page is HTML).
    re_path(r"^api/", api_errors.unknown_api_path),
]

# JSON under /api/, Django's usual pages elsewhere.
handler400 = "diagnoses.api.errors.bad_request"
handler403 = "diagnoses.api.errors.permission_denied"
handler404 = "diagnoses.api.errors.page_not_found"
handler500 = "diagnoses.api.errors.server_error"
