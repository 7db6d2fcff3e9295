"""A phone-sized screen (390×844): every control of the queue, a proposal page and the
emergency stop can be reached and used."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from tests import factories
from tests.browser.conftest import ARTIFACTS, _keep_screenshots, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTH, HEIGHT = 390, 844


@pytest.fixture
def phone(
    request: pytest.FixtureRequest, browser: Any, live_server_url: str
) -> Iterator[Callable[[User], Any]]:
    """Sign a user in on a 390×844 screen and return the queue page once it is live."""
    contexts: list[Any] = []
    pages: list[Any] = []

    def open_console(user: User) -> Any:
        context = browser.new_context(
            viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=2, has_touch=True
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(5000)
        pages.append(page)
        sign_in(page, live_server_url, user.username)
        return page

    yield open_console
    _keep_screenshots(request, pages)
    for context in contexts:
        context.close()


def _reachable(page: Any, selector: str) -> None:
    """The control is visible, lies wholly inside the screen's width once scrolled into view,
    and is the element a tap at its centre would reach (nothing covers it)."""
    control = page.locator(selector)
    assert control.count() >= 1, f"{selector}: not on the page"
    control = control.first
    control.scroll_into_view_if_needed()
    assert control.is_visible(), f"{selector}: not visible"
    box = control.bounding_box()
    assert box is not None, f"{selector}: not laid out"
    assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, f"{selector}: cut off {box}"
    assert box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT, f"{selector}: off-screen {box}"
    assert box["width"] >= 24 and box["height"] >= 24, f"{selector}: too small to tap {box}"
    # Playwright's actionability checks (visible, stable, enabled, receives the pointer at
    # its centre), without pressing it: these controls decide or stop things.
    control.click(trial=True)


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, f"the page is {width} px wide: something sticks out to the side"


def test_every_control_is_reachable_on_a_390_px_screen(
    phone: Callable[[User], Any], live_server_url: str, agent_with_key: factories.AgentWithKey
) -> None:
    # An admin: decides and holds the stop, so every control is on the page.
    admin = factories.user("ada", factories.ADMIN)
    proposal = factories.proposal(
        agent_with_key,
        target="ws-0142-finance-laptop.emea.corp.example",
        rationale="Beaconing to a known C2 domain every 60 s; the EDR saw a new service "
        "installed from a temp folder minutes before.",
    )
    factories.proposal(agent_with_key, target="ws-0143.corp.example")
    ARTIFACTS.mkdir(exist_ok=True)
    page = phone(admin)

    card = f"#card-{proposal.id}"
    for nav in ("Queue", "Held & review", "Advisory", "Blocked", "Agents"):
        _reachable(page, f"header nav a:text-is('{nav}')")
    for control in ("button.approve", "input.reason", "button.reject", "a.details"):
        _reachable(page, f"{card} {control}")
    _no_sideways_scroll(page)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "narrow-390-queue.png"), full_page=True)

    _reachable(page, "#stop-control summary")
    page.click("#stop-control summary")
    for control in ("#stop-reason", "#stop-control button[type=submit]"):
        _reachable(page, control)
    _no_sideways_scroll(page)
    page.screenshot(path=str(ARTIFACTS / "narrow-390-stop.png"))

    page.goto(f"{live_server_url}/proposals/{proposal.id}/")
    for control in ("button.approve", "input.reason", "button.reject"):
        _reachable(page, f".decide-panel {control}")
    _reachable(page, "#stop-control summary")
    _no_sideways_scroll(page)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "narrow-390-proposal.png"), full_page=True)


def test_the_audit_log_and_the_reports_fit_a_390_px_screen(
    phone: Callable[[User], Any], live_server_url: str, agent_with_key: factories.AgentWithKey
) -> None:
    """A manager on a phone reads the audit log and the reports: the wide tables scroll
    inside their own box, the page itself never sideways, and the filters stay in reach."""
    manager = factories.user("maya", factories.MANAGER)
    for n in range(3):
        factories.proposal(agent_with_key, target=f"ws-{n:04d}-finance-laptop.emea.corp.example")
    # A duplicate group: a manager, who decides nothing, is offered none of its decisions.
    factories.proposal(agent_with_key, target="ws-0000-finance-laptop.emea.corp.example")
    ARTIFACTS.mkdir(exist_ok=True)
    page = phone(manager)
    expect(page.locator(".card .group-head").first).to_be_visible()
    expect(page.locator("form.group-decide").first).to_be_hidden()
    expect(page.locator("form.decide").first).to_be_hidden()

    page.goto(f"{live_server_url}/audit/")
    assert page.locator(".audit-table tbody tr").count() >= 3
    for control in ("form.filters input[name=actor]", "form.filters button[type=submit]"):
        _reachable(page, control)
    _no_sideways_scroll(page)
    page.screenshot(path=str(ARTIFACTS / "narrow-390-audit.png"), full_page=True)

    page.goto(f"{live_server_url}/reports/")
    _no_sideways_scroll(page)
    page.screenshot(path=str(ARTIFACTS / "narrow-390-reports.png"), full_page=True)

    # The agents page: each agent's grants table scrolls inside its own box.
    page.goto(f"{live_server_url}/agents/")
    expect(page.locator("table.grants").first).to_be_visible()
    _no_sideways_scroll(page)
    page.screenshot(path=str(ARTIFACTS / "narrow-390-agents.png"), full_page=True)


def test_a_reason_that_is_one_long_word_wraps_instead_of_widening_the_page(
    console: Callable[..., Any],
    live_server_url: str,
    analyst: User,
    senior: User,
    agent_with_key: factories.AgentWithKey,
) -> None:
    # Reported: a 2,000-character reason without a space made the proposal page 20,000 px
    # wide, with its time and date columns off-screen.
    from agents.models import Criticality
    from approvals import services

    word = "A" * 1990
    rejected = factories.proposal(agent_with_key, target="ws-0301.corp.example")
    services.proposal_reject(proposal_id=rejected.id, analyst=senior, reason=word)
    factories.asset("dc01.corp.example", criticality=Criticality.CRITICAL)
    waiting = factories.proposal(agent_with_key, target="dc01.corp.example")
    services.proposal_approve(proposal_id=waiting.id, analyst=senior, reason=word)

    page = console(analyst)
    for path in ("/", f"/proposals/{rejected.id}/", f"/proposals/{waiting.id}/"):
        page.goto(live_server_url + path)
        page.wait_for_selector("main")
        assert word in page.content(), path
        # Where the text ends: inside the window, whatever box (if any) clips the page.
        right = page.evaluate(
            "Math.max(...Array.from(document.querySelectorAll('main td, main p, main li'))"
            ".map(el => el.getBoundingClientRect().right))"
        )
        width = page.evaluate("document.documentElement.clientWidth")
        assert right <= width, (path, right, width)


def test_scrolled_to_the_bottom_no_control_stays_under_the_flash(
    phone: Callable[[User], Any], agent_with_key: factories.AgentWithKey
) -> None:
    # The flash message stands over the bottom of the screen; below the last card there is
    # room for it, so whatever the analyst scrolls down to can be seen, not only clicked.
    admin = factories.user("ada", factories.ADMIN)
    for n in range(6):
        factories.proposal(agent_with_key, target=f"ws-{n:04d}.corp.example")
    page = phone(admin)
    last = page.locator("#queue-cards > .card").last
    last.scroll_into_view_if_needed()
    time.sleep(0.4)  # still for a moment, as a hand is before it clicks
    last.locator("button.reject").click()  # without a reason: refused, and the flash says why
    expect(page.locator("#flash .flash")).to_be_visible()
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    flash = page.locator("#flash").bounding_box()
    assert flash is not None and flash["height"] > 0
    for control in ("button.approve", "input.reason", "button.reject", "a.details"):
        box = last.locator(control).bounding_box()
        assert box is not None
        assert box["y"] + box["height"] <= flash["y"], f"{control} under the flash: {box} {flash}"


@pytest.mark.parametrize(
    ("screen", "height"),
    [("phone", HEIGHT), ("console", 800)],  # 390×844; 1280×800
)
def test_the_flash_and_the_undo_toasts_stand_clear_of_the_controls_in_use(
    request: pytest.FixtureRequest,
    agent_with_key: factories.AgentWithKey,
    screen: str,
    height: int,
) -> None:
    # A card's controls at the bottom of the screen, mid-page: the flash (and an undo toast)
    # would stand over them there; they move to the top instead.
    admin = factories.user("ada", factories.ADMIN)
    proposals = [
        factories.proposal(agent_with_key, target=f"ws-{n:04d}.corp.example") for n in range(8)
    ]
    page = request.getfixturevalue(screen)(admin)
    card = page.locator(f"#card-{proposals[3].id}")
    card.click(position={"x": 5, "y": 5})  # selected, as a click on it does
    page.evaluate(
        """id => { const form = document.querySelector(`#card-${id} form.decide`);
        window.scrollBy(0, form.getBoundingClientRect().bottom - (innerHeight - 24)); }""",
        str(proposals[3].id),
    )
    time.sleep(0.4)  # still for a moment, as a hand is before it clicks
    card.locator("button.reject").click()  # without a reason: refused, the flash says why
    expect(page.locator("#flash .flash")).to_be_visible()
    form = card.locator("form.decide").bounding_box()
    flash = page.locator("#flash").bounding_box()
    assert form is not None and flash is not None
    assert form["y"] > height / 2  # the controls are still at the bottom of the screen
    assert flash["y"] + flash["height"] <= form["y"], f"flash over the controls: {flash} {form}"
    page.screenshot(path=str(ARTIFACTS / f"flash-clear-{screen}.png"))
