"""What every console view shares: the role check, flash messages, running a service and
answering htmx."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import csrf
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRefresh, trigger_client_event

from soc_console import roles
from soc_console.errors import DomainError

from .. import selectors

# The event (HX-Trigger) that answers a decision or an undo; console.js listens for it.
ANSWERED = "console:answered"


def console_role(check: Callable[[Any], bool] = roles.can_view_console) -> Callable:
    """Sign-in plus a role check on the server, whatever the page shows or hides.

    A console form's htmx request that is refused gets a message its page shows in its flash
    region (console.js, on htmx:responseError) rather than a whole page it cannot: the
    sign-in page after a redirect, or the page that says the role does not allow it."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        guarded = login_required(view)

        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.htmx and not request.user.is_authenticated:
                not_done, again = _not_done(request)
                return refused(
                    request,
                    status=401,
                    text=f"{not_done}: you are signed out. Sign in again, then {again}.",
                )
            if request.user.is_authenticated and not check(request.user):
                if request.htmx:
                    not_done, _ = _not_done(request)
                    return refused(
                        request, status=403, text=f"{not_done}: your role does not allow this."
                    )
                raise PermissionDenied("Your role does not allow this.")
            return guarded(request, *args, **kwargs)

        return wrapped

    return decorator


# What a refused request of each console form did not do, and what the analyst does next.
_DECISIONS = ("decide", "bulk-decide")


def _not_done(request: HttpRequest) -> tuple[str, str]:
    name = getattr(request.resolver_match, "url_name", "")
    if name in _DECISIONS:
        return "Not decided", "decide again"
    if name == "undo-approval":
        return "Not undone", "undo again"
    return "Nothing was done", "try again"


def refused(request: HttpRequest, *, status: int, text: str) -> HttpResponse:
    """A console form's request refused before its view ran: the message, as the flash
    fragment, with the status that says why."""
    return render(request, "approvals/flash.html", {"ok": False, "text": text}, status=status)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW. A console form posted with a token the browser's cookie no longer
    matches: the analyst signed out and in again (in another tab, say), which rotates it. An
    htmx request gets a message the page can show; anything else gets Django's page."""
    if not request.htmx:
        return csrf.csrf_failure(request, reason)
    not_done, again = _not_done(request)
    return refused(
        request,
        status=403,
        text=(
            f"{not_done}: your session changed (signed out or signed in elsewhere). "
            f"Reload the page and {again}."
        ),
    )


def flash(
    request: HttpRequest,
    *,
    ok: bool,
    text: str,
    outcome: str = "",
    field: str = "",
    undo: dict[str, Any] | None = None,
) -> HttpResponse:
    """An htmx request gets the message as a fragment; a plain form post gets a redirect.

    With the fragment goes the ANSWERED event (HX-Trigger), which the page's script reads
    instead of the message: `outcome` says whether the card is finished ("decided") or still
    waits for another approver ("partial"), so it removes only what really left the queue;
    `field` names the input the server refused (the page puts the cursor there); `at` is the
    server's clock, so that an older copy of a decided card never brings it back. `undo` adds
    an approval's undo button with its countdown.
    """
    if request.htmx:
        rendered_at = selectors.render_stamp()
        response = render(
            request,
            "approvals/flash.html",
            {"ok": ok, "text": text, "undos": [undo] if undo else []},
        )
        return trigger_client_event(
            response, ANSWERED, {"ok": ok, "outcome": outcome, "field": field, "at": rendered_at}
        )
    (messages.success if ok else messages.error)(request, text)
    return redirect(safe_next(request))


def safe_next(request: HttpRequest) -> str:
    # Only ever bounce back inside the console: `next` and Referer come from the browser.
    target = request.POST.get("next") or request.META.get("HTTP_REFERER") or reverse("queue")
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("queue")


def run(
    request: HttpRequest,
    action: Callable[[], Any],
    success: str | Callable[[Any], str],
    *,
    refresh: bool = False,
) -> HttpResponse:
    """Call a service and say how it went (`success`, or what it makes of the service's
    result). `refresh` reloads the page after a success, for controls whose own state changed
    (a rolled-back execution offers no second rollback)."""
    try:
        done = action()
    except DomainError as exc:
        return flash(request, ok=False, text=exc.detail)
    if callable(success):
        success = success(done)
    if refresh and request.htmx:
        messages.success(request, success)  # shown by the reloaded page
        response = HttpResponseClientRefresh()
        response.status_code = 204  # as before: nothing to swap, the page reloads
        return response
    return flash(request, ok=True, text=success)


def analyst_step(
    service: Callable[..., Any], done: str, *, text: str | None = None
) -> Callable[..., HttpResponse]:
    """A console control that makes one change as the signed-in analyst: a POST from someone
    who may decide, the URL's id passed on by name (`proposal_id`, `execution_id`), the form's
    `text` field when the service takes one, and the page reloaded after a success (the
    control's own state changed: a rolled-back execution offers no second rollback)."""

    @require_POST
    @console_role(roles.can_decide)
    def step(request: HttpRequest, **ids: str) -> HttpResponse:
        said = {text: request.POST.get(text, "")} if text else {}
        return run(
            request, lambda: service(**ids, analyst=request.user, **said), done, refresh=True
        )

    step.__name__ = step.__qualname__ = service.__name__
    step.__doc__ = service.__doc__
    return step
