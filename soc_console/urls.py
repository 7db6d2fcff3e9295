from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import converters, include, path, re_path, register_converter
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from agents import api as agent_api
from approvals import api
from approvals import views as console
from approvals.views.signin import ConsoleLogin

from .health import healthz, readyz
from .metrics import metrics
from .problems import plain_problem


class AnyCaseUUID(converters.UUIDConverter):
    """A UUID in either case, as RFC 9562 reads one (an agent's library may print capitals);
    links are written in lower case, as the API gives ids."""

    regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


register_converter(AnyCaseUUID, "anyuuid")

# The encodings the schema is served in (drf-spectacular's renderers), by `?format=`.
SCHEMA_FORMATS = ("yaml", "json", "openapi", "openapi-json")


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema. Its query is `?format=` alone, checked before drf-spectacular reads
    it: that copies `?version=` as given into the Content-Disposition header (a newline there
    was a 500, a NUL a dropped connection, a quote a second file name), and answers an unknown
    format with a problem written in YAML."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        query = request.GET
        errors = {
            name: ["Unknown parameter: the schema takes only format."]
            for name in sorted(set(query) - {"format"})
        }
        formats = query.getlist("format")
        if len(formats) > 1 or (formats and formats[0] not in SCHEMA_FORMATS):
            errors["format"] = [f"Once, one of: {', '.join(SCHEMA_FORMATS)}."]
        if errors:
            return plain_problem(
                status_code=400,
                title="Invalid input",
                detail=f"The query has invalid parameters: {', '.join(sorted(errors))}.",
                code="invalid",
                errors=errors,
            )
        return super().dispatch(request, *args, **kwargs)


api_v1 = [
    path("agent/", agent_api.me, name="api-agent"),
    path("proposals/", api.proposals, name="api-proposals"),
    path("proposals/<anyuuid:proposal_id>/", api.proposal_detail, name="api-proposal"),
    path("proposals/<anyuuid:proposal_id>/withdraw/", api.proposal_withdraw, name="api-withdraw"),
    path("proposals/<anyuuid:proposal_id>/decisions/", api.proposal_decide, name="api-decisions"),
    path(
        "proposals/<anyuuid:proposal_id>/decisions/undo/",
        api.approval_undo,
        name="api-undo-approval",
    ),
    path("proposals/<anyuuid:proposal_id>/rollback/", api.proposal_rollback, name="api-rollback"),
    path("schema/", SchemaView.as_view(), name="api-schema"),
    # Split: the page loads its start-up script from ?script, as the CSP allows no inline one.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    # Anything else under the API answers in the API's own error format; [\s\S] rather than
    # `.`, so that a path with a newline in it (%0A) is "anything else" too.
    re_path(r"^[\s\S]*$", api.not_found),
]

urlpatterns = [
    path("", console.queue, name="queue"),
    path("partials/stop-banner/", console.stop_banner, name="stop-banner"),
    path("proposals/decide/", console.bulk_decide, name="bulk-decide"),
    path("proposals/<anyuuid:proposal_id>/", console.proposal_page, name="proposal"),
    path("proposals/<anyuuid:proposal_id>/decide/", console.decide, name="decide"),
    path("proposals/<anyuuid:proposal_id>/undo/", console.undo_approval, name="undo-approval"),
    path("proposals/<anyuuid:proposal_id>/rollback/", console.rollback, name="rollback"),
    path("proposals/<anyuuid:proposal_id>/confirm/", console.confirm_review, name="confirm-review"),
    path(
        "executions/<anyuuid:execution_id>/reconfirm/",
        console.reconfirm_held,
        name="reconfirm-held",
    ),
    path("executions/<anyuuid:execution_id>/cancel/", console.cancel_held, name="cancel-held"),
    path("lists/", console.work_lists, name="lists"),
    path("lists/confirm/", console.confirm_review_bulk, name="confirm-review-bulk"),
    path(
        "executions/<anyuuid:execution_id>/retry/", console.retry_execution, name="retry-execution"
    ),
    path(
        "executions/<anyuuid:execution_id>/acknowledge/",
        console.acknowledge_execution,
        name="acknowledge-execution",
    ),
    path("advisory/", console.advisory_page, name="advisory"),
    path("blocked/", console.blocked_page, name="blocked"),
    path("emergency-stop/", console.emergency_stop, name="emergency-stop"),
    path("agents/", console.agents_page, name="agents"),
    path("agents/<slug:slug>/suspend/", console.agent_suspend, name="agent-suspend"),
    path("agents/<slug:slug>/clear/", console.agent_clear, name="agent-clear"),
    path("agents/<slug:slug>/shadow/", console.shadow_page, name="agent-shadow"),
    path("agents/<slug:slug>/shadow/start/", console.shadow_start, name="agent-shadow-start"),
    path("agents/<slug:slug>/shadow/promote/", console.shadow_promote, name="agent-shadow-promote"),
    path("agents/<slug:slug>/shadow/discard/", console.shadow_discard, name="agent-shadow-discard"),
    path("", include("audit.urls")),
    path("accounts/login/", ConsoleLogin.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]

if settings.OIDC_ENABLED:
    urlpatterns.insert(0, path("oidc/", include("mozilla_django_oidc.urls")))
if not settings.LOCAL_LOGIN:
    # The admin's own sign-in form takes a password: send it to the console's sign-in page,
    # which offers the identity provider only (and then back to the admin).
    urlpatterns.insert(
        0,
        path(
            "admin/login/",
            RedirectView.as_view(pattern_name="login", query_string=True),
            name="admin-login",
        ),
    )
