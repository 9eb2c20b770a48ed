"""The portal in a real browser: Debian's Chromium, driven by Playwright, against a live server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright

from portal import roles
from tests import factories as f

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    # Playwright's sync API keeps an event loop running in this thread while the
    # browser is open; the test's own ORM calls (and the database flush after it)
    # are synchronous, so Django's async guard is lifted for this module only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_board_member_logs_in_and_reads_inventory_and_model_card(
    live_server: Any, chromium: Browser
) -> None:
    f.user("bella", roles=(roles.BOARD,), first_name="Bella", last_name="Board")
    uc = f.use_case(name="Loan approval assistant", risk_tier="high")
    mv = f.model_version(
        f.model(uc, name="loan-gbm"),
        version="3.1",
        subgroup_metrics={"age<30": {"recall": 0.72}, "age>50": {"recall": 0.88}},
    )
    page = chromium.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    page.goto(f"{live_server.url}/use-cases/")
    assert page.url.startswith(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("bella")
    page.get_by_label("Password").fill("pw-bella")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{live_server.url}/use-cases/")

    assert page.get_by_role("link", name="Loan approval assistant").is_visible()
    page.get_by_label("Search").fill("nothing like this")
    page.get_by_role("button", name="Filter").click()
    assert page.get_by_text("No use cases match.").is_visible()

    page.goto(f"{live_server.url}/")
    page.wait_for_selector("[data-chart] .main-svg")  # plotly drew the tier chart
    assert page.get_by_role("heading", name="Governance dashboard").is_visible()

    page.goto(f"{live_server.url}{mv.get_absolute_url()}")
    assert page.get_by_role("heading", name="Model card: loan-gbm 3.1").is_visible()
    low = page.locator("td.low")
    assert low.count() == 1 and low.first.inner_text() == "0.720"
    page.wait_for_selector("#content .chart .main-svg")
    assert errors == [], errors
    page.close()
