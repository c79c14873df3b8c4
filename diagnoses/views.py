from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods

from . import services
from .forms import UploadForm
from .models import Diagnosis, Mole

HISTORY_PAGE_SIZE = 12
FILE_FIELDS = {"image": "image/jpeg", "thumbnail": "image/jpeg", "heatmap": "image/png"}


def home(request):
    if request.user.is_authenticated:
        return redirect("diagnoses:list")
    return render(request, "home.html")


def _own_diagnosis(request, pk):
    return get_object_or_404(Diagnosis.objects.select_related("mole", "review"), pk=pk, owner=request.user)


@login_required
@require_GET
def diagnosis_list(request):
    diagnoses = request.user.diagnoses.select_related("mole", "review").order_by("-created_at")
    page = Paginator(diagnoses, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "diagnoses/list.html", {"page": page})


@login_required
@require_http_methods(["GET", "POST"])
def diagnosis_new(request):
    form = UploadForm(request.POST or None, request.FILES or None, owner=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            diagnosis = _create_from_form(request.user, form.cleaned_data)
        except ValidationError as error:
            form.add_error("image", error)
        else:
            messages.success(request, "Photo received. The analysis usually takes a few seconds.")
            return redirect(diagnosis)
    return render(request, "diagnoses/new.html", {"form": form}, status=400 if form.errors else 200)


def _create_from_form(owner, data):
    with transaction.atomic():
        mole = data["mole"]
        if data["new_mole_name"]:
            mole = services.mole_create(
                owner=owner, name=data["new_mole_name"], body_site=data["new_mole_body_site"] or "unknown"
            )
        return services.diagnosis_create(owner=owner, image=data["image"], mole=mole)


@login_required
@require_GET
def diagnosis_detail(request, pk):
    return render(request, "diagnoses/detail.html", {"diagnosis": _own_diagnosis(request, pk)})


@login_required
@require_GET
def diagnosis_status(request, pk):
    """Polled by the result page while the task runs; returns the rendered result when ready."""
    diagnosis = _own_diagnosis(request, pk)
    html = render_to_string("diagnoses/_result.html", {"diagnosis": diagnosis}, request=request)
    return JsonResponse({"status": diagnosis.status, "html": html})


@login_required
@require_http_methods(["GET", "POST"])
def diagnosis_delete(request, pk):
    diagnosis = _own_diagnosis(request, pk)
    if request.method == "POST":
        services.diagnosis_delete(diagnosis=diagnosis)
        messages.success(request, "The photo and its result were deleted.")
        return redirect("diagnoses:list")
    return render(request, "diagnoses/delete.html", {"diagnosis": diagnosis})


@login_required
@require_GET
def diagnosis_file(request, pk, kind):
    """Serve a private image to its owner or to staff; everyone else gets a 404."""
    if kind not in FILE_FIELDS:
        raise Http404
    visible = Diagnosis.objects.all() if request.user.is_staff else Diagnosis.objects.filter(owner=request.user)
    diagnosis = get_object_or_404(visible, pk=pk)
    stored = getattr(diagnosis, kind)
    if not stored:
        raise Http404
    response = FileResponse(stored.open("rb"), content_type=FILE_FIELDS[kind])
    response["Cache-Control"] = "private, max-age=3600"
    response["Content-Disposition"] = "inline"
    return response


@login_required
@require_GET
def mole_detail(request, pk):
    mole = get_object_or_404(Mole, pk=pk, owner=request.user)
    diagnoses = mole.diagnoses.select_related("review").order_by("created_at")
    return render(request, "diagnoses/mole.html", {"mole": mole, "diagnoses": diagnoses})
