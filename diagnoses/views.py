import copy
import functools
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch, Q
from django.db.models.functions import Lower
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.views import defaults
from django.views.decorators.http import require_GET, require_http_methods, require_POST, require_safe

from ml import CARD_FILENAME, CLASS_NAMES, CLASSES, MALIGNANT, TTA_VIEWS
from ml.artifact import file_stamp
from molesite.redirects import safe_next_url

from . import services
from .forms import NEW_MOLE_NAME_TAKEN, HistoryFilterForm, MoleForm, ShareLinkForm, UploadForm
from .models import (MOLE_FINISHED_PHOTOS, MOLE_NAME_TAKEN, RECOMMENDATION_ORDER, RISK_ORDER, Diagnosis, Mole,
                     NextStep, StaffAccess)
from .throttles import SharedFileRateThrottle, SharedReportRateThrottle, UploadRateThrottle

logger = logging.getLogger(__name__)

HISTORY_PAGE_SIZE = 12
FILE_FIELDS = {"image": "image/jpeg", "thumbnail": "image/jpeg", "heatmap": "image/png"}
# What a share link shows besides the page: the photo and the heatmap, not the thumbnail (the
# thumbnails of the mole's earlier photos have a route of their own, shared_earlier_photo).
SHARED_FILE_KINDS = ("image", "heatmap")
# On every answer under /shared/<token>/: no copy kept by a browser or proxy, the link (which
# opens the report) never sent on in a Referer, and nothing indexed by a crawler that found it.
SHARED_HEADERS = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer",
                  "X-Robots-Tag": "noindex, nofollow"}
# A new link's token goes from the POST that makes it to the result page it redirects to in a
# signed cookie of that page, read and deleted there: shown once, and never in the database
# (the session is kept there).
NEW_SHARE_COOKIE = "new_share_link"
NEW_SHARE_COOKIE_SALT = "diagnoses.share-link"
NEW_SHARE_COOKIE_SECONDS = 600


def home(request):
    if request.user.is_authenticated:
        return redirect("diagnoses:list")
    return render(request, "home.html")


def _own_diagnosis(request, pk):
    return get_object_or_404(Diagnosis.objects.select_related("mole", "review"), pk=pk, owner=request.user)


def _is_xhr(request):
    return request.headers.get("x-requested-with") == "XMLHttpRequest"


@login_required
@require_GET
def diagnosis_list(request):
    filters = HistoryFilterForm(request.GET, owner=request.user)
    # Newest first, then by id, as the API (api/filters.py): checks uploaded at the same moment
    # keep one order, so that none shows on two pages, or on none. With the photos before, as the
    # API's list: a row whose review of an earlier result is pressing asks next_step whether it
    # still leads (_review_mark.html), and every row whether it follows the photo before, rated
    # higher (_rated_higher_mark.html), without a query of its own.
    diagnoses = filters.filter(request.user.diagnoses.select_related("mole", "review").with_photos_before()
                               .order_by("-created_at", "-pk"))
    page = Paginator(diagnoses, HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "diagnoses/list.html", {"page": page, "filters": filters})


@login_required
@require_http_methods(["GET", "POST"])
def diagnosis_new(request):
    """The upload form. The page's script posts it with XHR (for the progress bar) and gets
    JSON back on success, or the re-rendered form with its messages (status 400, or 429 over
    the upload limit, which the API's uploads count towards too)."""
    initial = {"mole": request.GET.get("mole")} if request.method == "GET" else None
    form = UploadForm(request.POST or None, request.FILES or None, owner=request.user, initial=initial)
    throttle = UploadRateThrottle()  # the API's count: one limit for both ways of uploading
    retry_after = None
    if request.method == "POST" and not throttle.allow_request(request, None):
        retry_after = max(1, math.ceil(throttle.wait() or 1))
        # Unbound, with the fields as sent: a refused request's photo is never decoded (as the
        # API refuses before parsing), and the page's script keeps the chosen file.
        form = UploadForm(owner=request.user, initial=request.POST.dict())
    elif request.method == "POST" and form.is_valid():
        try:
            diagnosis = _create_from_form(request.user, form.cleaned_data)
        except ValidationError as error:
            form.add_error(None if hasattr(error, "error_dict") else "image", error)
        else:
            # Tagged so that the result page's script can drop it once the result is in.
            messages.success(request, "Photo received. The analysis usually takes a few seconds.",
                             extra_tags="analysis-pending")
            if _is_xhr(request):
                return JsonResponse({"redirect": diagnosis.get_absolute_url()}, status=201)
            return redirect(diagnosis)
    status = 429 if retry_after else 400 if form.errors else 200
    template = "diagnoses/_upload_form.html" if _is_xhr(request) else "diagnoses/new.html"
    too_many = _too_many_uploads(throttle.rate, retry_after) if retry_after else None
    response = render(request, template, {"form": form, "too_many_uploads": too_many}, status=status)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


def _too_many_uploads(rate: str, retry_after: int) -> str:
    count, _, period = rate.partition("/")
    minutes = math.ceil(retry_after / 60)
    when = "in a minute" if minutes <= 1 else f"in {minutes} minutes"
    return (f"You have sent many photos in a short time: at most {count} per {period} can be analysed. "
            f"Please try again {when}.")


def _create_from_form(owner, data):
    # A new mole is made in the transaction that stores the photo, so that a photo refused leaves
    # none behind, and after the photo is decoded, which no transaction may wait for.
    new_mole = functools.partial(_new_mole, owner, data) if data["new_mole_name"] else None
    return services.diagnosis_create(owner=owner, image=data["image"], mole=data["mole"],
                                     new_mole=new_mole)


def _new_mole(owner, data):
    """The form checked the name; an upload naming the same new mole at the same moment (another
    tab or device) can still win the race, and the unique constraint decides."""
    try:
        return services.mole_create(
            owner=owner, name=data["new_mole_name"], body_site=data["new_mole_body_site"] or "unknown"
        )
    except services.MoleNameTaken as error:
        raise ValidationError({"new_mole_name": NEW_MOLE_NAME_TAKEN}) from error


def _result_context(diagnosis, *, new_share_url=None):
    """What _result.html needs: the result, what to do next (read once: the advice and the share
    section both use it) and, once it is done, its share links."""
    done = diagnosis.status == Diagnosis.Status.DONE
    return {"diagnosis": diagnosis, "step": diagnosis.next_step(),
            "share_links": list(diagnosis.share_links.all()) if done else [],
            "share_form": ShareLinkForm(), "new_share_url": new_share_url,
            "earlier_photo_count": diagnosis.earlier_photos_of_mole().count() if done else 0}


@login_required
@require_GET
def diagnosis_detail(request, pk):
    diagnosis = _own_diagnosis(request, pk)
    context = _result_context(diagnosis, new_share_url=_new_share_url(request, diagnosis))
    response = render(request, "diagnoses/detail.html", context)
    if NEW_SHARE_COOKIE in request.COOKIES:
        response.delete_cookie(NEW_SHARE_COOKIE, path=diagnosis.get_absolute_url())
    return response


@login_required
@require_GET
def diagnosis_report(request, pk):
    """A print-friendly page of one result; the browser prints it or saves it as PDF. A photo with
    no result (still being analysed, or failed) has nothing to print: its result page, which
    offers no report then, says why (as mole_compare does for a mole with too few results). The
    shared report keeps its own notice (_report.html): its reader has no result page."""
    diagnosis = _own_diagnosis(request, pk)
    if diagnosis.is_pending:
        # Tagged as the upload's notice: the result page's script drops it once the result is in.
        messages.info(request, "This check is still being analysed: its report can be printed once its result "
                               "is ready.", extra_tags="analysis-pending")
        return redirect(diagnosis)
    if diagnosis.status == Diagnosis.Status.FAILED:
        messages.info(request, "This check has no report to print: its analysis did not complete.")
        return redirect(diagnosis)
    return _report_page(request, diagnosis, "diagnoses/report.html",
                        file_url=lambda kind: reverse("diagnoses:file", args=[diagnosis.pk, kind]),
                        earlier_url=lambda earlier: reverse("diagnoses:file", args=[earlier.pk, "thumbnail"]))


def _report_page(request, diagnosis, template, *, file_url, earlier_url, share_link=None):
    """The printable report (templates/diagnoses/_report.html), its images at file_url(kind);
    with the mole's earlier photos (at earlier_url(diagnosis), each with whether another model
    version analysed it) for its owner, and on a shared report when the link was made with them."""
    earlier = []
    if share_link is None or share_link.with_earlier_photos:
        earlier = [(photo, earlier_url(photo), by_another_model(photo, diagnosis))
                   for photo in diagnosis.earlier_photos_of_mole()]
    context = {"diagnosis": diagnosis, "card": _model_card_summary(), "share_link": share_link,
               "image_url": file_url("image"), "heatmap_url": file_url("heatmap"), "earlier_photos": earlier,
               "earlier_by_another_model": any(another for _photo, _url, another in earlier)}
    return render(request, template, context)


@login_required
@require_GET
def diagnosis_status(request, pk):
    """Polled by the result page while the task runs; returns the rendered result when ready."""
    diagnosis = _own_diagnosis(request, pk)
    html = render_to_string("diagnoses/_result.html", _result_context(diagnosis), request=request)
    return JsonResponse({"status": diagnosis.status, "late": diagnosis.is_late, "html": html})


# --- sharing a result with a doctor -----------------------------------------------------------

def share_url(request, token: str) -> str:
    """The address of the report a share link opens, as the patient sends it."""
    return request.build_absolute_uri(reverse("shared_report", args=[token]))


def _new_share_url(request, diagnosis):
    """The link just made for this check (diagnosis_share's cookie), or None."""
    token = request.get_signed_cookie(NEW_SHARE_COOKIE, default=None, salt=NEW_SHARE_COOKIE_SALT,
                                      max_age=NEW_SHARE_COOKIE_SECONDS)
    link = services.share_link_find(token=token) if token else None
    if link is None or link.diagnosis_id != diagnosis.pk or not link.is_active:
        return None
    return share_url(request, token)


@login_required
@require_POST
def diagnosis_share(request, pk):
    """Make a share link; the result page it redirects to shows it, once (at the page's share
    section; a refusal's message is at the top of the page, where messages are)."""
    diagnosis = _own_diagnosis(request, pk)
    form = ShareLinkForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose how long the link works: 1, 7 or 30 days.")
        return redirect(diagnosis)
    try:
        _link, token = services.share_link_create(diagnosis=diagnosis, days=form.cleaned_data["days"],
                                                  with_earlier_photos=form.cleaned_data["with_earlier_photos"])
    except services.ShareLinkRefused as refused:
        messages.error(request, str(refused))
        return redirect(diagnosis)
    response = redirect(diagnosis.get_absolute_url() + "#share")
    response.set_signed_cookie(
        NEW_SHARE_COOKIE, token, salt=NEW_SHARE_COOKIE_SALT, max_age=NEW_SHARE_COOKIE_SECONDS,
        path=diagnosis.get_absolute_url(), secure=settings.SESSION_COOKIE_SECURE, httponly=True, samesite="Lax",
    )
    return response


@login_required
@require_POST
def share_link_stop(request, pk, link_pk):
    """Withdraw a link; back to the result page's share section, where the link now reads
    Withdrawn (as diagnosis_share goes back there: not the top of the page, away from the
    button), or to the page the form names in `next` (Who has opened your records lists the
    links of every check) when it is on this site."""
    diagnosis = _own_diagnosis(request, pk)
    services.share_link_revoke(link=get_object_or_404(diagnosis.share_links, pk=link_pk))
    messages.success(request, "You stopped sharing this result: the link no longer opens it.")
    back = diagnosis.get_absolute_url() + "#share"
    return redirect(safe_next_url(request, request.POST.get("next"), back))


def _shared(view):
    """For the pages of /shared/<token>/, open to anyone holding the link: SHARED_HEADERS on
    every answer, a 404 included."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            response = view(request, *args, **kwargs)
        except Http404 as exc:
            response = defaults.page_not_found(request, exc)
        for header, value in SHARED_HEADERS.items():
            response[header] = value
        return response

    return wrapped


def _active_link(request, token):
    """(the share link of this token, None) while it is active; (None, a 410 page) once it
    expired or was withdrawn, or its patient's account was deactivated (an account closed by
    the clinic shares nothing); (None, a 404 page) for a token no link has (or had: its check
    was deleted), worded for a doctor without an account: a link cut short or mistyped, not the
    patients' "it belongs to another account"."""
    link = services.share_link_find(token=token)
    if link is None:
        return None, render(request, "diagnoses/shared_gone.html", {"unknown": True}, status=404)
    if not link.is_active or not link.diagnosis.owner.is_active:
        return None, render(request, "diagnoses/shared_gone.html", status=410)
    return link, None


@_shared
@require_GET
def shared_report(request, token):
    """The printable report of one check, for whoever holds an active share link to it (the
    patient's doctor); each opening by someone else than the patient is counted for the patient.
    At most SHARED_REPORT_RATE openings per client address."""
    if refused := SharedReportRateThrottle().refusal(request):
        return refused
    link, gone = _active_link(request, token)
    if gone:
        return gone
    if request.user.pk != link.diagnosis.owner_id:  # the patient checking their own link is not its reader
        services.share_link_record_opening(link=link)
    return _report_page(request, link.diagnosis, "diagnoses/shared_report.html", share_link=link,
                        file_url=lambda kind: reverse("shared_file", args=[token, kind]),
                        earlier_url=lambda earlier: reverse("shared_earlier_photo", args=[token, earlier.pk]))


@_shared
@require_GET
def shared_file(request, token, kind):
    """The photo or the heatmap of a shared report: counted with the report's other images
    (SharedFileRateThrottle), or as an opening when the link opens no report."""
    if kind not in SHARED_FILE_KINDS:
        raise Http404
    link, gone = _active_link(request, token)
    return _shared_image_refusal(request, gone) or gone or serve_file(link.diagnosis, kind)


def _shared_image_refusal(request, gone):
    """The 429 of an image asked for through a share link, or None: a link that opens no report
    counts as an opening (SharedReportRateThrottle), a working one's images on their own count."""
    throttle = SharedReportRateThrottle() if gone else SharedFileRateThrottle()
    return throttle.refusal(request)


@_shared
@require_GET
def shared_earlier_photo(request, token, pk):
    """The thumbnail of one of the mole's earlier photos, on a shared report made with them;
    404 for any other photo (a later one, another mole's, a link made without them). Counted
    as shared_file is."""
    link, gone = _active_link(request, token)
    if refused := _shared_image_refusal(request, gone) or gone:
        return refused
    if not link.with_earlier_photos:
        raise Http404
    return serve_file(get_object_or_404(link.diagnosis.earlier_photos_of_mole(), pk=pk), "thumbnail")


@login_required
@require_http_methods(["GET", "POST"])
def diagnosis_delete(request, pk):
    diagnosis = _own_diagnosis(request, pk)
    # A later photo of the mole that follows this one's advice, rated higher: deleting this photo
    # ends it, as untracking the mole would (mole_delete), so the page names it before the patient
    # confirms, and the message after says it again once no page of theirs does.
    following = photo_following(diagnosis)
    if request.method == "POST":
        lead = diagnosis.advice_as_leader  # read before the row goes, as the page gave it
        services.diagnosis_delete(diagnosis=diagnosis)
        messages.success(request, "The photo and its result were deleted.")
        if following is not None:
            messages.warning(request, f"The photo you deleted {lead.summary}. The later photo of "
                                      f"{following.uploaded_text} followed its "
                                      "advice and no longer does: until a doctor has seen the mole, keep following "
                                      f"that advice: {lead.advice}")
        return redirect("diagnoses:list")
    return render(request, "diagnoses/delete.html", {"diagnosis": diagnosis, "following": following})


def photo_following(diagnosis) -> Diagnosis | None:
    """The latest of the mole's later photos whose next step follows this one's advice, as rated
    higher (NextStep.previous); None when none does, or the photo is of no tracked mole."""
    if diagnosis.mole_id is None or diagnosis.status != Diagnosis.Status.DONE:
        return None
    mole = diagnosis.mole
    photos = list(mole.diagnoses.select_related("review").order_by("created_at", "pk"))
    mole_photos_timeline(mole, photos)  # each photo's next step reads its photo before from them
    following = [photo for photo in photos
                 if photo.created_at > diagnosis.created_at and photo.next_step().previous == diagnosis]
    return following[-1] if following else None


@login_required
@require_GET
def diagnosis_file(request, pk, kind):
    """Serve a private image to its owner or to clinicians allowed to view diagnoses (the
    Reviewers group, superusers) whom the admin lets in (its second sign-in step passed);
    everyone else gets a 404."""
    if kind not in FILE_FIELDS:
        raise Http404
    may_review = admin.site.has_permission(request) and request.user.has_perm("diagnoses.view_diagnosis")
    visible = Diagnosis.objects.all() if may_review else Diagnosis.objects.filter(owner=request.user)
    diagnosis = get_object_or_404(visible.select_related("owner"), pk=pk)
    if may_review and kind != "thumbnail":
        # The photo or heatmap opened on its own, as from the case page's links: an opening of the
        # case (the queue's thumbnails are not, see the README's "Who opened what").
        services.staff_access_record(staff=request.user, patient=diagnosis.owner,
                                     record=StaffAccess.Record.CASE, diagnosis=diagnosis)
    return serve_file(diagnosis, kind)


def serve_file(diagnosis, kind):
    """Stream one of a diagnosis' private images (a FILE_FIELDS kind) to a viewer the caller
    has checked (this view, the API, the shared report); 404 if it has none (yet), or if its
    file is missing from storage (a restore of an older image backup, say), logged for
    `checkphotos`."""
    stored = getattr(diagnosis, kind)
    if not stored:
        raise Http404
    try:
        opened = stored.open("rb")
    except FileNotFoundError:
        logger.warning("%s of %s is missing from storage", kind, diagnosis.pk)
        raise Http404 from None
    response = FileResponse(opened, content_type=FILE_FIELDS[kind])
    response["Content-Disposition"] = "inline"
    return response


# --- moles ------------------------------------------------------------------------------------

@login_required
@require_GET
def mole_list(request):
    # Each mole's latest photo alone, in photos_newest_first (a list of at most one, as the
    # template reads it): sliced, the database picks it per mole, where the page once read every
    # photo of every mole to show one. Its review says whether a new photo was asked for.
    # Newest by upload time, then by id, as the mole's page orders its photos ("created_at", "pk"):
    # two photos of the very same moment are then told apart alike on both pages.
    latest = Diagnosis.objects.select_related("review").order_by("-created_at", "-pk")[:1]
    # And the newest photo that could answer a clinician's request for a new one (one more query).
    answering = (Diagnosis.objects.filter(answers_requests()).select_related("review")
                 .order_by("-created_at", "-pk")[:1])
    # And its finished photos, with their reviews, set on it as with_photos_before does (one query
    # for every mole): what its page advises (mole_advice) is worked out from them, so that a card
    # whose newest photo is rated lower than the photo its page follows says so (advised_earlier_photo).
    finished = (Diagnosis.objects.filter(status=Diagnosis.Status.DONE).select_related("review")
                .order_by("created_at", "pk"))
    moles = (
        Mole.objects.filter(owner=request.user).with_last_photo()
        .annotate(photo_count=Count("diagnoses"))
        .order_by(Lower("name"), "name")  # alphabetical in any case; Meta.ordering is dropped with an aggregate
        .prefetch_related(Prefetch("diagnoses", queryset=latest, to_attr="photos_newest_first"),
                          Prefetch("diagnoses", queryset=finished, to_attr=MOLE_FINISHED_PHOTOS),
                          Prefetch("diagnoses", queryset=answering, to_attr="answering_photos"))
    )
    for mole in moles:  # the queryset's own rows, which the page then lists
        mole.new_photo_asked_on = new_photo_asked_on(mole.answering_photos)
        newest = mole.photos_newest_first[0] if mole.photos_newest_first else None
        mole.earlier_photo_rated_higher = advised_earlier_photo(
            mole_advice(mole, newest), newest)
    return render(request, "diagnoses/mole_list.html", {"moles": moles})


def answers_requests() -> Q:
    """The photos that answer, or hold, a clinician's request for a new photo of their mole: the
    analysed ones, and one whose review a re-run kept (under way or failed again). A new photo
    still being analysed, or whose analysis failed, has not answered it: the request stays."""
    return Q(status=Diagnosis.Status.DONE) | Q(review__isnull=False)


def new_photo_asked_on(photos) -> Diagnosis | None:
    """The photo whose review asks for a new one (Diagnosis.new_photo_asked_for) that no later
    photo has answered: the newest of answers_requests among photos (oldest first, with their
    reviews), when it asks; else None. The mole's page, My moles and the API say so."""
    answering = [photo for photo in photos
                 if photo.status == Diagnosis.Status.DONE or photo.review_or_none is not None]
    return answering[-1] if answering and answering[-1].new_photo_asked_for else None


@dataclass(frozen=True)
class BandChange:
    """A finished photo in another risk band than the mole's finished photo before it."""

    went_up: bool
    from_risk: str


def mole_timeline(diagnoses):
    """(diagnosis, BandChange or None: whether its risk band differs from the last finished photo's)."""
    timeline, previous = [], None
    for diagnosis in diagnoses:
        change = None
        if diagnosis.status == Diagnosis.Status.DONE and diagnosis.risk in RISK_ORDER:
            if previous is not None and diagnosis.risk != previous.risk:
                change = BandChange(RISK_ORDER[diagnosis.risk] > RISK_ORDER[previous.risk], previous.risk)
            previous = diagnosis
        timeline.append((diagnosis, change))
    return timeline


def mole_photos_timeline(mole, photos):
    """mole_timeline of a mole's photos (oldest first, with their reviews), for its page and the
    API's mole alike. It first sets the finished ones on the mole, as with_photos_before gives
    them: each photo's next_step picks its photo before (Diagnosis.photo_before) from them, not
    from the database again."""
    setattr(mole, MOLE_FINISHED_PHOTOS, [photo for photo in photos if photo.status == Diagnosis.Status.DONE])
    return mole_timeline(photos)


class MoleAdvice(NamedTuple):
    """What a mole's page advises (mole_alerts): the alert on a rise, or the section on one photo,
    or neither; never both."""

    # (photo, the band it rose from): the latest rise no clinician has judged, whose alert gives
    # that photo's band's advice
    rise: tuple[Diagnosis, str] | None
    # the photo the section is about: the latest analysed one, or the newest when rerun_unfinished
    photo: Diagnosis | None
    # photo's next step, which the section gives; None when rerun_unfinished (no result to advise on)
    step: NextStep | None
    # a photo newer than photo has no result: the section calls photo "the latest analysed"
    has_newer_photo: bool

    @property
    def rerun_unfinished(self) -> bool:
        """photo is the newest, its re-run under way or failed: the section gives its pressing
        review alone, as its result page does after the spinner or the failure (the one section
        without a step)."""
        return self.photo is not None and self.step is None


def mole_alerts(latest_rise, newest, latest) -> MoleAdvice:
    """What a mole's page advises: at most one of the alert on latest_rise and a section on one
    photo, each with its advice.

    latest_rise: (photo, the band it rose from), the latest rise no clinician has judged, or None.
    latest: the mole's latest analysed photo or None, whose next step (read here, once) the
    section gives as its result page does where more than its own band leads it: a pressing
    review (of this result, or of an earlier one still standing) or the photo before, rated
    higher. Not a review asking less (a routine check): its photo's page gives it, with the band's
    advice the clinician overruled. newest: the mole's newest photo or None. While its re-run is
    under way, or once it failed, its result page still gives its review (the re-run kept it),
    after the spinner or the failure: a pressing one takes the section, with no step, when it
    asks at least as much as what leads latest's step (below). The patient was e-mailed to read
    it, and a re-run can wait for the workers for as long as they are down.

    How much advice asks is on RISK_ORDER's scale: a review's RECOMMENDATION_ORDER (-1 when not
    pressing), a band's RISK_ORDER. Ties go to the pressing review, here and against a rise: it
    leads when it asks at least as much (>=), as the README says, where next_step lets a review of
    an earlier result lead only when it asks more (>). A photo rated higher leads a rise only when
    its band is above the risen photo's (>), or it is the risen photo.

    Two alerts would give two pieces of advice (low, high, medium, low: "went up to high, within
    2 weeks" beside "follow the medium photo's, within 4"), so one stays. A pressing review does
    when it asks at least as much as the risen photo's band, or when it is of the risen photo,
    whose band's advice the step gives too. The photo rated higher does when its band is above
    the risen photo's, or when it is the risen photo: the note gives that photo's band and advice,
    as the alert would, though not that it rose. Else the rise does."""
    photo = step = review = None
    # How much what leads latest's step asks: its own review (a routine check, -1, asks less than
    # any band), else the photo rated higher's band, else its own. The review of a photo without a
    # result asking less would read as weaker advice than latest's page gives; its photo's page
    # gives it, as a routine check's does. -1 with no analysed photo: any pressing review is the
    # page's advice.
    asked = -1
    if latest is not None:
        step = latest.next_step()
        if step.by_clinician:
            review = latest.review
            asked = RECOMMENDATION_ORDER.get(review.recommendation, -1)
        else:
            # the earlier photo's own advice: its band, or its clinician's review (advice_order)
            asked = step.previous.advice_order if step.previous else RISK_ORDER.get(latest.risk, -1)
        if step.previous or (review is not None and review.is_pressing):
            photo = latest
        else:
            step = review = None
    # Pending or failed alike: no result to advise on, only the review that a re-run kept.
    if newest is not None and newest.status != Diagnosis.Status.DONE:
        kept_review = newest.review_or_none
        if kept_review is not None and kept_review.is_pressing \
                and RECOMMENDATION_ORDER[kept_review.recommendation] >= asked:
            photo, step, review = newest, None, kept_review
    advice = MoleAdvice(latest_rise, photo, step, has_newer_photo=photo is not None and photo != newest)
    if photo is None or latest_rise is None:
        return advice
    risen = latest_rise[0]
    if review is not None:
        leads = risen == photo or RECOMMENDATION_ORDER[review.recommendation] >= RISK_ORDER[risen.risk]
    else:
        leads = risen == step.previous or step.previous.advice_order > RISK_ORDER[risen.risk]
    if leads:
        return advice._replace(rise=None)
    return MoleAdvice(latest_rise, None, None, has_newer_photo=False)


def mole_advice(mole, newest) -> MoleAdvice:
    """mole_alerts for one mole, the one rule of its page, its card on My moles and the page's
    Stop tracking: from its finished photos (oldest first, with their reviews, set on the mole as
    with_photos_before sets them, so that next_step reads the photo before from them) and its
    newest photo of any status. The latest rise no clinician has judged: the mole's timeline
    (mole_timeline) marks the finished photos alone."""
    finished = getattr(mole, MOLE_FINISHED_PHOTOS)
    rises = [(photo, change.from_risk) for photo, change in mole_timeline(finished)
             if change and change.went_up and not photo.judged_by_a_clinician]
    analysed = [photo for photo in finished if photo.malignant_probability is not None]
    return mole_alerts(rises[-1] if rises else None, newest, analysed[-1] if analysed else None)


def advised_earlier_photo(advice: MoleAdvice, newest) -> Diagnosis | None:
    """The earlier photo whose higher band's advice the mole's page gives (advice, mole_advice),
    when the mole's newest photo shows less (a lower band, or no result yet): the photo rated
    higher that the latest analysed photo's next step follows, or the photo of a rise no
    clinician has judged. None when the page's advice is the newest photo's own, or a
    clinician's. My moles marks the mole's card with it, as the photo's badge alone would say
    less than its page; Stop tracking names it with its advice, which no later photo gives once
    the photos are no longer compared."""
    if advice.step is not None and advice.step.previous is not None:
        photo = advice.step.previous
    elif advice.rise is not None:
        photo = advice.rise[0]
    else:
        return None
    if newest is None or photo == newest:
        return None
    # photo.advice_order: a photo that leads by its clinician's review asks what that review asks
    if newest.status == Diagnosis.Status.DONE and photo.advice_order <= RISK_ORDER.get(newest.risk, -1):
        return None
    return photo


@login_required
@require_GET
def mole_detail(request, pk):
    mole = get_object_or_404(Mole.objects.with_last_photo(), pk=pk, owner=request.user)
    diagnoses = list(mole.diagnoses.select_related("review").order_by("created_at", "pk"))
    timeline = mole_photos_timeline(mole, diagnoses)
    # A rise a clinician has since judged is theirs to advise on: the photo's page gives it. A
    # review of an earlier result (before a re-run) judged other figures: the alert stays, unless
    # that review's advice leads (mole_alerts).
    done = [d for d in diagnoses if d.status == Diagnosis.Status.DONE and d.malignant_probability is not None]
    newest = diagnoses[-1] if diagnoses else None
    advice = mole_advice(mole, newest)
    in_use = (load_model_card() or {}).get("version")
    chart = {
        "labels": _chart_labels([d.created_at for d in done]),
        "days": _days_since_first([d.created_at for d in done]),
        "values": [d.malignant_percent for d in done],
        "risks": [d.risk for d in done],
        "thresholds": _percent_thresholds(),
    }
    return render(
        request,
        "diagnoses/mole.html",
        {"mole": mole, "diagnoses": diagnoses, "timeline": timeline, "advice": advice,
         "new_photo_asked_on": new_photo_asked_on(diagnoses),
         # what Stop tracking names before it is confirmed: the advice no later photo gives once
         # the photos are no longer compared
         "untracking_drops": advised_earlier_photo(advice, newest),
         "chart": chart, "has_chart": len(done) >= 2,
         "can_compare": len(done) >= 2,  # as mole_compare asks: two analysed photos
         # the chart's threshold lines are the model's in use; an earlier one banded at its own
         "by_an_earlier_model": bool(in_use) and any(d.model_version != in_use for d in done)},
    )


@login_required
@require_GET
def mole_compare(request, pk):
    """Two photos of one mole side by side (by default its first and its latest analysed ones),
    with what changed between them."""
    mole = get_object_or_404(Mole, pk=pk, owner=request.user)
    photos = list(mole.diagnoses.order_by("created_at"))
    analysed = [photo for photo in photos if photo.status == Diagnosis.Status.DONE]
    if len(photos) < 2:  # the page asks for a second photo
        return render(request, "diagnoses/mole_compare.html", {"mole": mole, "photos": photos})
    # A failed or unfinished photo has nothing to compare: with fewer than two analysed photos the
    # mole's page (which then offers no Compare) says why, not two "not analysed" side by side.
    if len(analysed) < 2:
        messages.info(request, _too_few_to_compare(photos, analysed))
        return redirect(mole)
    # The defaults skip the others; one can still be picked, and the page marks it.
    before = _photo_of(photos, request.GET.get("before"), default=analysed[0])
    after = _photo_of(photos, request.GET.get("after"), default=analysed[-1])
    if before.created_at > after.created_at:
        before, after = after, before
    # One photo picked twice: the page says so, with no "same day, no change" beside it.
    change = photo_change(before, after) if before != after else None
    context = {
        "mole": mole, "photos": photos, "before": before, "after": after, "change": change,
        # what to do about the later photo, as its result page says it (compare_step)
        "step": compare_step(after) if change else None,
        "unanalysed": next((photo for photo in (before, after) if photo.status != Diagnosis.Status.DONE), None),
        "pickers": [("before", "Before", before), ("after", "After", after)],
    }
    return render(request, "diagnoses/mole_compare.html", context)


def _too_few_to_compare(photos, analysed) -> str:
    """Why a mole of two photos or more, fewer than two of them analysed, has nothing to compare."""
    said = f"Comparing needs two analysed photos of this mole; it has {'one' if analysed else 'none'}."
    if any(photo.is_pending for photo in photos):
        said += " A photo still being analysed can be compared once its result is in."
    if any(photo.status == Diagnosis.Status.FAILED for photo in photos):
        said += " A photo that could not be analysed is not compared: upload another."
    return said


def _photo_of(photos, pk, *, default):
    """The photo with this id among the mole's photos; default when none is asked for; 404 for
    any other id (another mole's photo, another patient's, or not an id at all)."""
    if not pk:
        return default
    found = next((photo for photo in photos if str(photo.pk) == pk), None)
    if found is None:
        raise Http404
    return found


def compare_step(after) -> NextStep | None:
    """The later photo's next step where more than its band leads it (a clinician's review, a
    review of an earlier result still standing, the photo before rated higher): the comparison
    gives it, not the band's advice, which would say less than the review or contradict it, or
    leave out the higher rating a lower estimate does not cancel. None where the band leads: the
    comparison gives the band's advice on a rise, as before."""
    step = after.next_step()
    return None if step.source == "band" else step


def photo_change(before, after) -> dict | None:
    """What changed from one analysed photo to a later one; None unless both are analysed."""
    if before.status != Diagnosis.Status.DONE or after.status != Diagnosis.Status.DONE:
        return None
    # From the percentages the page shows beside it: 7.9% -> 8.5% is up 0.6 points, whatever
    # the unrounded figures' difference rounds to.
    points = round(after.malignant_percent - before.malignant_percent, 1)
    return {
        # Calendar days, as the photos' dates read: 20:00 and 9:00 the next morning are a day apart.
        "days": (localtime(after.created_at).date() - localtime(before.created_at).date()).days,
        "points": points,
        "points_abs": abs(points),
        "risk_rose": RISK_ORDER.get(after.risk, 0) > RISK_ORDER.get(before.risk, 0),
        "risk_fell": RISK_ORDER.get(after.risk, 0) < RISK_ORDER.get(before.risk, 0),
        "class_changed": after.predicted_class != before.predicted_class,
        "model_changed": by_another_model(before, after),
    }


def by_another_model(photo, other) -> bool:
    """Whether two results come from different model versions: a change between them may come
    from the model (its weights, its risk thresholds) rather than from the mole."""
    return photo.model_version != other.model_version


def _days_since_first(moments):
    """Each moment's distance from the first in days: the chart spaces photos by the time between
    them, so a change over a week does not look like one over a year."""
    return [round((m - moments[0]).total_seconds() / 86400, 4) for m in moments]


def _chart_labels(moments):
    """Dates, with the time where two photos share a day."""
    days = [date_format(localtime(m)) for m in moments]
    return [
        date_format(localtime(m), "DATETIME_FORMAT") if days.count(day) > 1 else day for m, day in zip(moments, days)
    ]


@login_required
@require_http_methods(["GET", "POST"])
def mole_edit(request, pk):
    mole = get_object_or_404(Mole, pk=pk, owner=request.user)
    # The form gets a copy: validating writes the posted values onto its instance, and the page
    # (title, breadcrumb) names the mole as saved, not as refused.
    form = MoleForm(request.POST or None, instance=copy.copy(mole))
    if request.method == "POST":
        if form.is_valid() and _mole_saved(form):
            messages.success(request, "The mole was saved.")
            return redirect(mole)
    # A refused save is said by the form's summary (_form_errors.html), which takes the focus,
    # as on every other form: no flash message besides it.
    return render(request, "diagnoses/mole_edit.html", {"mole": mole, "form": form}, status=400 if form.errors else 200)


def _mole_saved(form) -> bool:
    """Save a valid mole form; False, with the form's message, when a rename to the same name
    from another tab or device won the race (the form checked the name; the constraint decides)."""
    try:
        services.mole_update(mole=form.instance, **form.cleaned_data)
    except services.MoleNameTaken:
        form.add_error("name", MOLE_NAME_TAKEN)
        return False
    return True


@login_required
@require_POST
def mole_delete(request, pk):
    mole = get_object_or_404(Mole, pk=pk, owner=request.user)
    # What its page named before the patient confirmed (mole_detail's untracking_drops), said
    # again once no page of theirs says it.
    photos = list(mole.diagnoses.select_related("review").order_by("created_at", "pk"))
    mole_photos_timeline(mole, photos)
    newest = photos[-1] if photos else None
    dropped = advised_earlier_photo(mole_advice(mole, newest), newest)
    services.mole_delete(mole=mole)
    messages.success(request, f"You no longer track “{mole.name}”. Its photos stay in your history, "
                              "no longer compared with each other.")
    if dropped is not None:
        # In the words of the page's box (_advice_dropped.html): its clinician's recommendation
        # when a review leads, not its band's advice
        lead = dropped.advice_as_leader
        messages.warning(request, f"The photo of {dropped.uploaded_text} {lead.summary}. The later photos are no longer compared "
                                  "with it, so they no longer say so: until a doctor has seen the mole, follow "
                                  f"its advice: {lead.advice}")
    return redirect("diagnoses:moles")


# --- about the model --------------------------------------------------------------------------

_card_cache = {}  # path -> ((inode, mtime_ns, size), card): parsed once per version of the file


def load_model_card():
    """The shipped model card as a dict, or None when it is missing or unreadable. Pages that
    show its thresholds ask for it on every request; the file is parsed again only when it
    changes, which its file_stamp tells."""
    path = settings.ML_MODEL_DIR / CARD_FILENAME
    try:
        version = file_stamp(path)
        cached = _card_cache.get(path)
        if cached and cached[0] == version:
            return cached[1]
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.info("no readable model card at %s: %s", path, exc)
        return None
    card = card if isinstance(card, dict) else None
    _card_cache[path] = (version, card)
    return card


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _percent(value):
    value = _number(value)
    return None if value is None else round(value * 100, 1)


def _percent_thresholds():
    thresholds = _dict((load_model_card() or {}).get("thresholds"))
    return {band: _percent(thresholds.get(band)) for band in ("medium", "high")}


def _dict(value):
    """value if the card holds an object there, else an empty one."""
    return value if isinstance(value, dict) else {}


def _model_card_summary():
    """Figures of the card (ml.training writes it), flattened for the templates. Every key is
    optional, so that a partial or hand-edited card shows what it has instead of failing."""
    card = load_model_card()
    if card is None:
        return None
    metrics = _dict(card.get("validation"))
    thresholds = _dict(card.get("thresholds"))
    at_thresholds = _dict(metrics.get("at_thresholds"))
    bands = []
    for band in ("medium", "high"):
        figures = _dict(at_thresholds.get(band))
        cut = _number(thresholds.get(band))
        bands.append({
            "band": band, "threshold": _percent(cut if cut is not None else figures.get("threshold")),
            "sensitivity": _percent(figures.get("sensitivity")), "specificity": _percent(figures.get("specificity")),
        })
    recall = _dict(metrics.get("per_class_recall"))
    ece = metrics.get("ece_after", metrics.get("ece"))
    figures = [
        (label, _percent(metrics.get(key)), _interval(_dict(metrics.get("intervals")), key))
        for key, label in (("balanced_accuracy", "Balanced accuracy"), ("accuracy", "Accuracy"),
                           ("malignant_auc", "Malignant vs benign AUC"))
        if _percent(metrics.get(key)) is not None
    ]
    return {
        "version": card.get("version"),
        "created_at": _card_day(card.get("created")),
        "training": _training_summary(card),
        "n_images": _number(metrics.get("n_images")),
        "figures": figures,
        "ece": _number(ece),
        "has_intervals": any(interval for _label, _value, interval in figures),
        "bands": bands,
        "threshold_rule": card.get("threshold_rule") if isinstance(card.get("threshold_rule"), str) else "",
        "recall": [(CLASS_NAMES[code], code in MALIGNANT, _percent(recall.get(code))) for code in CLASSES
                   if _percent(recall.get(code)) is not None],
        "confusion": _confusion(_dict(metrics.get("confusion_matrix"))),
        "roc": _roc_points(metrics.get("roc_curve")),
        "limits": [str(item) for item in card["limits"] if item] if isinstance(card.get("limits"), list) else [],
        "licence": card.get("licence") if isinstance(card.get("licence"), str) else "",
    }


def _interval(intervals, key):
    """The card's bootstrap interval of one figure as percentages (low, high, level), or None."""
    bounds, level = intervals.get(key), _number(intervals.get("level"))
    if not (isinstance(bounds, list) and len(bounds) == 2 and level is not None):
        return None
    low, high = (_percent(b) for b in bounds)
    return None if low is None or high is None else (low, high, round(level * 100))


# The card's codes as a reader of the page understands them; a code not listed shows as it is.
CARD_CODES = {
    "lesion-disjoint, stratified by dx": "by lesion (no lesion on both sides), stratified by diagnosis",
    "full": "full: the recipe of the shipped model",
    "tiny": "tiny: a toy model, as the tests train",
    "mixed_bfloat16": "mixed: bfloat16 arithmetic, float32 weights",
    "mixed_float16": "mixed: float16 arithmetic, float32 weights",
}


def _readable(code):
    return CARD_CODES.get(code, code) if isinstance(code, str) else code


def _training_summary(card):
    """(label, value) rows describing how the model was trained, from whatever the card has."""
    split = _dict(card.get("data_split"))
    training = _dict(card.get("training"))
    hardware = _dict(training.get("hardware"))
    size = _dict(card.get("input_size"))
    rows = [
        ("Split", _readable(split.get("method"))),
        ("Training images", _pair(split.get("n_train_images"), split.get("n_train_lesions"))),
        ("Validation images", _pair(split.get("n_val_images"), split.get("n_val_lesions"))),
        ("Input size", f"{size['width']}×{size['height']} pixels" if _number(size.get("width")) and _number(size.get("height")) else None),
        ("Preset", _readable(card.get("preset"))),
        ("Epochs", f"{training['epochs_run']} run, best {training.get('best_epoch', '?')}" if _number(training.get("epochs_run")) else None),
        ("Training time", f"{round(training['fit_seconds'] / 60, 1)} minutes" if _number(training.get("fit_seconds")) else None),
        ("Hardware", hardware.get("device")),
        ("Training precision", _readable(training.get("precision"))),
        ("Checkpoint", training.get("selection")),
        ("Test-time views", TTA_VIEWS.get(card.get("tta_views")) if isinstance(card.get("tta_views"), int) else None),
        ("Calibration", _calibration_text(card)),
        ("Class shown", _decision_text(_dict(card.get("decision")))),
    ]
    return [(label, value) for label, value in rows if isinstance(value, (str, int, float)) and value != ""]


def _calibration_text(card):
    """How the probabilities are calibrated (ml.calibration), as far as the card says."""
    temperature = _number(card.get("temperature"))
    if temperature is None:
        return None
    text = f"temperature scaling, T = {temperature:.3f}"
    if isinstance(card.get("logit_offset"), dict):  # cards before 2026-12-06 have none
        text = "a fixed offset per class that undoes training's class weighting, then " + text
    recalibrated = _card_day(_dict(card.get("recalibrated")).get("at"))
    return f"{text} (fitted again {recalibrated})" if recalibrated else text


def _card_day(value) -> str:
    """A card's ISO timestamp ("2026-12-01T10:00:00+00:00") as the pages write a day (DATE_FORMAT),
    on the clinic's calendar (TIME_ZONE), as every other date on the site: 23:06 UTC is already the
    next day east of Greenwich. A timestamp without an offset is taken as written. Its first ten
    characters as they are when it is not a timestamp, "" when there is none."""
    text = str(value or "")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text[:10]
    if moment.tzinfo is not None:
        moment = localtime(moment)
    return date_format(moment.date(), "DATE_FORMAT")


def _decision_text(decision):
    """How the predicted class is picked from the probabilities (ml.metrics.decide)."""
    tau = _number(decision.get("tau"))
    if tau is None:
        return None
    if tau == 0:
        return "the most probable class"
    towards = "common" if tau < 0 else "rare"
    return (f"the most probable class after weighing it towards {towards} classes "
            f"(τ = {tau:+.2f}, chosen on validation to balance accuracy and balanced accuracy)")


def _pair(images, lesions):
    if _number(images) is None:
        return None
    return f"{images} ({lesions} lesions)" if _number(lesions) is not None else str(images)


def _confusion(matrix):
    labels, rows = matrix.get("labels"), matrix.get("matrix")
    if not (isinstance(labels, list) and isinstance(rows, list) and len(rows) == len(labels)):
        return None
    table = []
    for label, row in zip(labels, rows):
        if not (isinstance(row, list) and len(row) == len(labels) and all(_number(v) is not None for v in row)):
            return None
        total = sum(row) or 1
        cells = [(value, round(100 * value / total), i == len(table)) for i, value in enumerate(row)]
        table.append((CLASS_NAMES.get(label, str(label)), label, sum(row), cells))
    return {"labels": labels, "rows": table}


def _roc_points(points):
    if not isinstance(points, list):
        return []
    clean = []
    for point in points:
        if isinstance(point, dict) and _number(point.get("fpr")) is not None and _number(point.get("tpr")) is not None:
            clean.append({"x": point["fpr"], "y": point["tpr"]})
    return clean


@require_GET
def about_model(request):
    return render(request, "about_model.html", {"summary": _model_card_summary()})


@require_safe  # GET and HEAD, as the TemplateView it replaced: monitors and link checkers HEAD
def privacy(request):
    """The privacy notice, naming the clinic's contact when one is set (CLINIC_CONTACT)."""
    return render(request, "privacy.html", {"clinic_contact": settings.CLINIC_CONTACT})
