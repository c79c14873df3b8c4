from django.urls import path

from . import views

app_name = "diagnoses"

urlpatterns = [
    path("", views.diagnosis_list, name="list"),
    path("new/", views.diagnosis_new, name="new"),
    path("<uuid:pk>/", views.diagnosis_detail, name="detail"),
    path("<uuid:pk>/status/", views.diagnosis_status, name="status"),
    path("<uuid:pk>/report/", views.diagnosis_report, name="report"),
    path("<uuid:pk>/delete/", views.diagnosis_delete, name="delete"),
    path("<uuid:pk>/files/<str:kind>/", views.diagnosis_file, name="file"),
    path("<uuid:pk>/share/", views.diagnosis_share, name="share"),
    path("<uuid:pk>/share/<uuid:link_pk>/stop/", views.share_link_stop, name="share_stop"),
    path("moles/", views.mole_list, name="moles"),
    path("moles/<uuid:pk>/", views.mole_detail, name="mole"),
    path("moles/<uuid:pk>/edit/", views.mole_edit, name="mole_edit"),
    path("moles/<uuid:pk>/compare/", views.mole_compare, name="mole_compare"),
    path("moles/<uuid:pk>/delete/", views.mole_delete, name="mole_delete"),
]
