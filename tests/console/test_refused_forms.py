"""A console form's htmx request refused before its view decides anything gets a message its
page can show in the flash region, with a status that says why; a plain form post keeps
Django's pages."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from approvals.models import Proposal

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def _flash(text: str) -> str:
    return f'<p class="flash error">{text}</p>'


def test_a_decision_posted_with_a_rotated_csrf_token_says_the_session_changed(
    analyst: User, pending: Proposal
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)
    client.get(reverse("queue"))  # the page's token, as a browser holds it
    response = client.post(
        reverse("decide", args=[pending.pk]),
        {"verdict": "approve", "reason": "ok", "csrfmiddlewaretoken": "x" * 64},
        HTTP_X_CSRFTOKEN="y" * 64,
        **HTMX,
    )
    assert response.status_code == 403
    assert (
        _flash(
            "Not decided: your session changed (signed out or signed in elsewhere). "
            "Reload the page and decide again."
        )
        in response.content.decode()
    )
    pending.refresh_from_db()
    assert pending.status == "pending"


def test_a_plain_form_post_with_a_rotated_token_keeps_djangos_page(
    analyst: User, pending: Proposal
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)
    response = client.post(reverse("decide", args=[pending.pk]), {"verdict": "approve"})
    assert response.status_code == 403
    assert "CSRF verification failed" in response.content.decode()


def test_an_undo_posted_with_a_rotated_token_says_it_was_not_undone(
    analyst: User, pending: Proposal
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)
    response = client.post(reverse("undo-approval", args=[pending.pk]), **HTMX)
    assert response.status_code == 403
    assert "Not undone: your session changed" in response.content.decode()


def test_a_decision_from_a_signed_out_page_says_so_instead_of_showing_the_sign_in_page(
    pending: Proposal,
) -> None:
    response = Client().post(reverse("decide", args=[pending.pk]), {"verdict": "approve"}, **HTMX)
    assert response.status_code == 401
    assert _flash("Not decided: you are signed out. Sign in again, then decide again.") in (
        response.content.decode()
    )
    # A plain post still goes to the sign-in page.
    plain = Client().post(reverse("decide", args=[pending.pk]), {"verdict": "approve"})
    assert plain.status_code == 302
    assert plain.url.startswith(reverse("login"))


def test_a_decision_by_a_role_that_may_not_decide_is_refused_in_words(
    manager: User, pending: Proposal, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(manager)
    response = client.post(reverse("decide", args=[pending.pk]), {"verdict": "approve"}, **HTMX)
    assert response.status_code == 403
    assert _flash("Not decided: your role does not allow this.") in response.content.decode()
    plain = client.post(reverse("decide", args=[pending.pk]), {"verdict": "approve"})
    assert plain.status_code == 403
    assert "Not for your role" in plain.content.decode()
    pending.refresh_from_db()
    assert pending.status == "pending"
