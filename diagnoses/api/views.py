from collections.abc import Mapping

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch
from django.db.models.functions import Lower
from django.http import Http404
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema,
    extend_schema_view,
)
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import exceptions, generics, mixins, status, viewsets
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import services
from ..models import MOLE_NAME_TAKEN, Diagnosis, Mole, ShareLink
from ..throttles import TokenRateThrottle, UploadRateThrottle
from ..views import serve_file, share_url
from .filters import DiagnosisFilter, StableOrderingFilter, ordering_values
from .serializers import (
    AccountSerializer, DiagnosisDetailSerializer, DiagnosisSerializer,
    DiagnosisUploadSerializer, ErrorSerializer, FieldErrorsSerializer, MoleSerializer,
    ShareLinkCreatedSerializer, ShareLinkCreateSerializer, ShareLinkSerializer, StaffAccessSerializer,
)


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 100

    def get_schema_operation_parameters(self, view):
        """DRF's parameters, with what their plain integers leave out: `page` also takes `last`
        (last_page_strings), and `page_size` stops at max_page_size."""
        parameters = super().get_schema_operation_parameters(view)
        most = self.max_page_size
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["description"] = "A page number from 1, or `last` for the last page."
                last = {"type": "string", "enum": list(self.last_page_strings)}
                parameter["schema"] = {"anyOf": [{"type": "integer", "minimum": 1}, last]}
            elif parameter["name"] == self.page_size_query_param:
                parameter["description"] = (f"Results per page: {self.page_size} unless given, at "
                                            f"most {most} (a larger number gives {most}).")
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": most}
        return parameters


class JSONNegotiation(DefaultContentNegotiation):
    """Every view of the API sets it (the schema's and the docs' aside). They render JSON alone
    (a file download: its errors), so an `Accept` header or `?format=` that asks for anything
    else is ignored and gets JSON, not DRF's 406 (or, for `?format=`, 404), which no operation's
    schema lists: a client asking a file for `image/jpeg` gets the JSON 404 of a missing one.
    What does match is still honoured (`Accept: application/json; indent=2`)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except (exceptions.NotAcceptable, Http404):
            return renderers[0], renderers[0].media_type


ORDERING_FIELDS = ["created_at", "finished_at", "malignant_probability"]

# Retry-After on a diagnosis still queued or running: when to ask again, in seconds. The site's
# own page asks after 1 second, then 1.3 times later each time up to 5 (static/js/
# diagnosis-status.js); 2 is its pace over the first seconds, when most results arrive.
POLL_AFTER_SECONDS = 2
POLL_AFTER = OpenApiParameter(
    "Retry-After", OpenApiTypes.INT, OpenApiParameter.HEADER, response=[202, 200],
    description=f"While `status` is `queued` or `running` only: seconds to wait ({POLL_AFTER_SECONDS}) "
                "before asking for the diagnosis again.",
)


def poll_headers(diagnosis) -> dict:
    return {"Retry-After": str(POLL_AFTER_SECONDS)} if diagnosis.is_pending else {}


# The answers other than success that the schema documents, each written once, all with their
# JSON body: refused() for {"detail": "..."}, invalid() for a 400 (BAD_REQUEST).
def refused(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


# A 400 names each invalid field with its messages; a body that cannot be read at all (not
# JSON, a broken multipart body) gets {"detail": "..."} instead.
BAD_REQUEST = PolymorphicProxySerializer(
    component_name="BadRequest", serializers=[FieldErrorsSerializer, ErrorSerializer],
    resource_type_field_name=None,
)


def invalid(description: str) -> OpenApiResponse:
    return OpenApiResponse(BAD_REQUEST, description=description)


SIGNED_OUT = refused("Not signed in: no or an invalid `Authorization: Token` header.")
NO_CSRF = "Signed in with the site's session cookie: a write without its `X-CSRFToken` header."
# Every patient endpoint but the token's (accounts.permissions.AgreedToPrivacyNotice).
AUTH_RESPONSES = {
    401: SIGNED_OUT,
    403: refused("The account has not agreed to the privacy notice yet (`detail` says where to). "
                 + NO_CSRF),
}
ERROR_RESPONSES = {**AUTH_RESPONSES, 404: refused("No such object among yours.")}
# A paginated list (DRF's pagination answers 404 to a page it cannot serve).
NO_SUCH_PAGE = "No such page: `page` is neither a number nor `last`, or is past the last page."
LIST_RESPONSES = {**AUTH_RESPONSES, 404: refused(NO_SUCH_PAGE)}
BAD_FILTER = invalid("A filter's or `ordering`'s value is invalid: the answer names the parameter and says "
                     "why.")
BAD_MOLE = invalid("An invalid name or body site, or a name you already use.")


def _file_action(kind, media_type, description):
    """GET /diagnoses/{id}/<kind>/: one of the diagnosis' private images, to its owner only."""

    def serve(self, request, pk=None):
        return serve_file(self.get_object(), kind)

    serve.__name__ = kind  # DRF routes an action by its function's name
    serve = action(detail=True, methods=["get"])(serve)  # JSONNegotiation, as the viewset
    responses = {(200, media_type): OpenApiTypes.BINARY, **ERROR_RESPONSES}
    return extend_schema(responses=responses, description=description)(serve)


@extend_schema_view(
    list=extend_schema(
        description="Your diagnoses, newest first unless `ordering` says otherwise.",
        parameters=[
            OpenApiParameter(
                "ordering",
                str,
                enum=ordering_values(ORDERING_FIELDS),
                description="Sort by this field; a leading `-` sorts descending. Checks without a "
                "value (not done yet) come last either way. Any other value is refused (400).",
            )
        ],
        responses={200: DiagnosisSerializer(many=True), 400: BAD_FILTER, **LIST_RESPONSES},
    ),
    retrieve=extend_schema(responses={200: DiagnosisDetailSerializer, **ERROR_RESPONSES}, parameters=[POLL_AFTER]),
    destroy=extend_schema(
        description="Delete the diagnosis and its stored images.", responses={204: None, **ERROR_RESPONSES}
    ),
)
class DiagnosisViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    content_negotiation_class = JSONNegotiation
    serializer_class = DiagnosisSerializer
    pagination_class = Pagination
    parser_classes = [MultiPartParser]
    filter_backends = [DjangoFilterBackend, StableOrderingFilter]
    filterset_class = DiagnosisFilter
    ordering_fields = ORDERING_FIELDS
    ordering = ["-created_at"]

    def get_queryset(self):
        diagnoses = Diagnosis.objects.filter(owner_id=self.request.user.pk).select_related("review", "mole")
        # The list's `advice` (next_step) reads each tracked row's photo before: one query for
        # the page, not one a row. A single diagnosis asks for its own in one query anyway.
        return diagnoses.with_photos_before() if self.action == "list" else diagnoses

    def get_serializer_class(self):
        return DiagnosisDetailSerializer if self.action == "retrieve" else DiagnosisSerializer

    def get_throttles(self):
        if self.action == "create":
            return [UploadRateThrottle()]
        return super().get_throttles()

    def throttled(self, request, wait):
        raise exceptions.Throttled(wait, detail=f"Too many uploads: the limit is {UploadRateThrottle().rate}.")

    @extend_schema(
        request=DiagnosisUploadSerializer,
        responses={
            202: DiagnosisSerializer,
            400: invalid("Not a usable image (the `image` field says why), or not your mole."),
            **AUTH_RESPONSES,
            # 413 and 415, as every operation's: diagnoses.api.schema.document_refusals_of_any_request
            429: refused("Too many uploads; the `Retry-After` header says when to try again."),
        },
        parameters=[
            OpenApiParameter(
                "Location", OpenApiTypes.URI, OpenApiParameter.HEADER, response=[202], description="The new diagnosis."
            ),
            POLL_AFTER,
        ],
        description="Upload a photo. It is classified in the background: poll the returned `url` until "
        "`status` is `done` or `failed`, every `Retry-After` seconds while it is `queued` or `running`. "
        "`late` turns true after a minute (the workers are busy or down; the photo waits): ask less "
        "often then. A photo still queued after 15 minutes is sent to the workers again, one whose "
        "worker died is queued again after 10, and fails (with `error`) after a second such death.",
    )
    def create(self, request):
        upload = DiagnosisUploadSerializer(data=request.data, owner=request.user)
        upload.is_valid(raise_exception=True)
        try:
            diagnosis = services.diagnosis_create(owner=request.user, **upload.validated_data)
        except DjangoValidationError as error:
            code = getattr(error, "code", None)
            # A field's error (the mole deleted meanwhile) or, without a field, the image's.
            detail = error.message_dict if hasattr(error, "error_dict") else {"image": error.messages}
            raise exceptions.ValidationError(detail, code=code) from error
        data = self.get_serializer(diagnosis).data
        # str(): the field is a Hyperlink, and WSGI servers take header values of type str only.
        return Response(data, status=status.HTTP_202_ACCEPTED,
                        headers={"Location": str(data["url"]), **poll_headers(diagnosis)})

    def retrieve(self, request, *args, **kwargs):
        diagnosis = self.get_object()
        return Response(self.get_serializer(diagnosis).data, headers=poll_headers(diagnosis))

    def perform_destroy(self, instance):
        services.diagnosis_delete(diagnosis=instance)

    image = _file_action("image", "image/jpeg", "The photo as stored (re-encoded JPEG, metadata removed).")
    thumbnail = _file_action("thumbnail", "image/jpeg", "A preview at most 320 pixels wide or high.")
    heatmap = _file_action("heatmap", "image/png", "Where the network looked (Grad-CAM); 404 until done.")


@extend_schema_view(
    list=extend_schema(
        description="The moles you follow, by name, each with its photos oldest first.",
        responses={200: MoleSerializer(many=True), **LIST_RESPONSES},
    ),
    create=extend_schema(responses={201: MoleSerializer, 400: BAD_MOLE, **AUTH_RESPONSES}),
    retrieve=extend_schema(responses={200: MoleSerializer, **ERROR_RESPONSES}),
    partial_update=extend_schema(responses={200: MoleSerializer, 400: BAD_MOLE, **ERROR_RESPONSES}),
    destroy=extend_schema(
        description=("Stop tracking a mole; its photos stay in your history, no longer compared with each other "
                     "(a later photo's `advice` no longer follows an earlier one rated higher)."),
        responses={204: None, **ERROR_RESPONSES},
    ),
)
class MoleViewSet(viewsets.ModelViewSet):
    content_negotiation_class = JSONNegotiation
    serializer_class = MoleSerializer
    pagination_class = Pagination
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        # Oldest first, ties by id, as the mole's page and with_photos_before: each photo's `advice`
        # and `risk_change` read the photos before it (MoleSerializer.to_representation).
        timeline = Prefetch("diagnoses", queryset=Diagnosis.objects.select_related("review")
                            .order_by("created_at", "pk"))
        # order_by again: a model's default ordering is dropped from a query with an aggregate.
        # Alphabetical in any case on any database (SQLite, or a "C" collation, sorts by code
        # point: "Zed" before "apple"), as the site's list (diagnoses.views.mole_list).
        moles = (Mole.objects.filter(owner_id=self.request.user.pk).with_last_photo()
                 .order_by(Lower("name"), "name"))
        return moles.prefetch_related(timeline)

    def perform_create(self, serializer):
        mole = _unique_name(services.mole_create, owner=self.request.user, **serializer.validated_data)
        serializer.instance = mole

    def perform_update(self, serializer):
        mole = _unique_name(services.mole_update, mole=serializer.instance, **serializer.validated_data)
        # Read again as a GET would: DRF drops the prefetched photos of the mole it updated, and
        # they would come back newest first, without their reviews.
        serializer.instance = self.get_queryset().get(pk=mole.pk)

    def perform_destroy(self, instance):
        services.mole_delete(mole=instance)


@extend_schema_view(
    list=extend_schema(
        description="Each time someone at the review desk opened one of your checks, tracked moles or your "
        "account, newest first; the same record opened again by the same person within half an hour counts once.",
        responses={200: StaffAccessSerializer(many=True), **LIST_RESPONSES},
    ),
)
class StaffAccessViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    content_negotiation_class = JSONNegotiation
    serializer_class = StaffAccessSerializer
    pagination_class = Pagination

    def get_queryset(self):
        return self.request.user.staff_accesses.order_by("-at", "-pk")


@extend_schema_view(
    get=extend_schema(
        description="Your account: its settings, and when you agreed to the privacy notice.",
        responses={200: AccountSerializer, **AUTH_RESPONSES},
    ),
    patch=extend_schema(
        responses={
            200: AccountSerializer,
            400: invalid("A setting that is not a boolean, or a body that cannot be read."),
            **AUTH_RESPONSES,
        },
        description="Change `review_emails` (e-mail me when a clinician has reviewed a check) or "
                    "`model_improvement` (include my reviewed checks, without my name, in the table "
                    "clinicians export to improve the model). The e-mail address changes on the "
                    "site's account page, confirmed by a link sent to the new address.",
    ),
)
class AccountView(generics.RetrieveUpdateAPIView):
    content_negotiation_class = JSONNegotiation
    serializer_class = AccountSerializer
    http_method_names = ["get", "patch", "head", "options"]

    def get_object(self):
        return self.request.user


class ShareRefused(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "share_refused"


@extend_schema_view(
    list=extend_schema(
        description="The links made to this diagnosis' report, newest first, active or not. Their tokens are "
        "not kept, so no address is given here.",
        responses={
            200: ShareLinkSerializer(many=True),
            **AUTH_RESPONSES,
            404: refused(f"No such diagnosis among yours. Or: {NO_SUCH_PAGE}"),
        },
    ),
    create=extend_schema(
        request=ShareLinkCreateSerializer,
        responses={
            201: ShareLinkCreatedSerializer,
            400: invalid("`days` is not 1, 7 or 30."),
            409: refused("The diagnosis is not done, or already has 5 active links: `detail` says "
                         "which."),
            **ERROR_RESPONSES,
        },
        description="Make a link that opens this diagnosis' printable report without an account (for your "
        "doctor) for `days` days. Its `url` is in this answer only. Anyone holding it can see the result and "
        "the photo until it expires or is revoked. No `Location` header: no GET answers for one link; it is in "
        "the list, by `id`.",
    ),
)
class ShareLinkViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """/diagnoses/{diagnosis_id}/share-links/: links to one of your diagnoses' report."""

    content_negotiation_class = JSONNegotiation
    serializer_class = ShareLinkSerializer
    pagination_class = Pagination

    def _diagnosis(self):
        return get_object_or_404(Diagnosis, pk=self.kwargs["diagnosis_id"], owner_id=self.request.user.pk)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular, reading the types
            return ShareLink.objects.none()
        return self._diagnosis().share_links.order_by("-created_at", "-pk")

    def create(self, request, diagnosis_id=None):
        body = ShareLinkCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            link, token = services.share_link_create(diagnosis=self._diagnosis(), **body.validated_data)
        except services.ShareLinkRefused as refused:
            raise ShareRefused(str(refused)) from refused
        link.url = share_url(request, token)
        return Response(ShareLinkCreatedSerializer(link, context=self.get_serializer_context()).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={200: ShareLinkSerializer, **ERROR_RESPONSES},
        description="Stop sharing: the link no longer opens the report (it answers 410). It stays in the list, "
        "`withdrawn`. Answers 200 with the link; revoking it again is harmless and answers the same "
        "(`revoked_at` stays the first time).",
    )
    def revoke(self, request, diagnosis_id=None, pk=None):
        link = services.share_link_revoke(link=self.get_object())
        return Response(self.get_serializer(link).data)


@extend_schema_view(
    list=extend_schema(
        description="The links made to the reports of all your diagnoses, newest first, active or not, each "
        "with its `diagnosis`: who could open what, and how often it was opened. Revoke one at "
        "/diagnoses/{id}/share-links/{link id}/revoke/.",
        responses={200: ShareLinkSerializer(many=True), **LIST_RESPONSES},
    ),
)
class AllShareLinksViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """/share-links/: the links of every one of your diagnoses."""

    content_negotiation_class = JSONNegotiation
    serializer_class = ShareLinkSerializer
    pagination_class = Pagination

    def get_queryset(self):
        return ShareLink.objects.of_owner(self.request.user)


def _unique_name(service, **kwargs):
    """The serializer checks the name; a concurrent request can still win the race."""
    try:
        return service(**kwargs)
    except services.MoleNameTaken as error:
        raise exceptions.ValidationError({"name": [MOLE_NAME_TAKEN]}, code="unique") from error


def _credentials_as_web_sign_in_reads_them(data):
    """The username NFKC-normalised, as sign-up stores it and web sign-in reads it: typed as
    "ｆｏｏ" (full width) it is foo's, here too, and the lockout counts a wrong password against
    the account's own username. AuthTokenSerializer reads only the username and the password."""
    if not isinstance(data, Mapping):
        return data  # the serializer refuses it as it would
    credentials = {key: data[key] for key in ("username", "password") if key in data}
    if "username" in credentials:
        credentials["username"] = get_user_model().normalize_username(credentials["username"])
    return credentials


class TokenView(APIView):
    """POST a username and password for an API token; DELETE revokes the token in use."""

    content_negotiation_class = JSONNegotiation

    def get_authenticators(self):
        # A POST signs in by its password alone: a stale token in its header must not refuse it
        # (401), and a valid one must not exempt it from the throttle. (No request while
        # drf-spectacular reads the view: the schema's auth=[] says it for the POST.)
        if getattr(self.request, "method", None) == "POST":
            return []
        return super().get_authenticators()

    def get_permissions(self):
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    def get_throttles(self):
        return [TokenRateThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        request=AuthTokenSerializer,
        responses={
            200: AuthTokenSerializer,
            400: invalid("Wrong username or password."),
            429: refused(
                "Too many token requests from your address, or too many wrong passwords for this "
                "username from it (sign-in is paused); the `Retry-After` header says when to try again."
            ),
        },
        auth=[],
        description="Send it as `Authorization: Token <token>`. The same token is returned until revoked.",
    )
    def post(self, request):
        # Django's own request, not DRF's wrapper: the sign-in lockout marks a refused attempt on
        # it, and its middleware reads the mark there.
        serializer = AuthTokenSerializer(data=_credentials_as_web_sign_in_reads_them(request.data),
                                         context={"request": request._request})
        serializer.is_valid(raise_exception=True)
        token, _ = Token.objects.get_or_create(user=serializer.validated_data["user"])
        return Response({"token": token.key})

    @extend_schema(
        request=None,
        responses={
            204: None,
            401: SIGNED_OUT,
            # Not the privacy notice's: revoking is the one thing allowed until it is agreed to.
            403: refused(NO_CSRF),
        },
        description="Revoke your API token; the next POST issues a new one.",
    )
    def delete(self, request):
        request.user.api_tokens_revoke()
        return Response(status=status.HTTP_204_NO_CONTENT)


class JSONErrorsMixin:
    """Errors in JSON, as everywhere under /api/, whatever the view renders otherwise (YAML,
    HTML) and whatever the client accepts."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), "application/json"
        return response


class SchemaView(JSONErrorsMixin, SpectacularAPIView):
    """GET /schema/: the OpenAPI document. Public, so it authenticates nobody: a stale token in
    the header must not turn it into a 401."""

    authentication_classes = []


class DocsView(JSONErrorsMixin, SpectacularSwaggerSplitView):
    """GET /docs/: Swagger UI. Public, like the schema it reads."""

    authentication_classes = []
