"""Issue 4, acceptance 3: the whole approval of a high-risk release, in a real browser."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from approvals.models import ApprovalRequest
from audits.models import AuditEvent
from portal import roles
from portal.permissions import Access
from portal.services import grant_access
from registry.models import Deployment
from tests import factories as f
from tests.approvals.rig import make_version
from tests.e2e.test_browser import chromium  # noqa: F401  (the module-scoped browser)


def _login(browser: Browser, base: str, username: str) -> tuple[Page, list[str]]:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(f"pw-{username}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")
    return page, errors


def _decide(page: Page, verdict: str, comment: str) -> None:
    """Use the decision form on the review page; htmx swaps the panel in place."""
    page.get_by_label(verdict).check()
    page.get_by_label("Comment").fill(comment)
    page.get_by_role("button", name="Record decision").click()
    expect(page.locator("#decision-panel")).to_contain_text(comment)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_high_risk_release_from_request_to_production(
    live_server: Any,
    chromium: Browser,  # noqa: F811
) -> None:
    base = live_server.url
    uc = f.use_case(name="Mortgage pre-screening", risk_tier="high")
    carol = f.user("carol", roles=(roles.CONTRIBUTOR,), first_name="Carol")
    grant_access(Access.system(), uc, carol, "contribute")
    f.user("bea", roles=(roles.BOARD,), first_name="Bea")
    f.user("ben", roles=(roles.BOARD,), first_name="Ben")
    f.user("rita", roles=(roles.RISK_OFFICER,), first_name="Rita")
    f.user("otto", roles=(roles.AUDITOR,), first_name="Otto")
    mv, _ = make_version(uc, carol)
    # the pipeline forgot the bias evaluation
    from registry.models import Evidence

    Evidence.objects.filter(model_version=mv, kind="bias_evaluation").update(kind="other")
    all_errors: list[str] = []

    # 1. The contributor requests approval from the model card.
    page, errors = _login(chromium, base, "carol")
    page.goto(f"{base}{mv.get_absolute_url()}")
    page.get_by_role("link", name="Request approval").click()
    page.get_by_label("Environment").select_option("production")
    page.get_by_label("Summary").fill("First release of the mortgage model.")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Release of")).to_be_visible()
    req = ApprovalRequest.objects.get(model_version=mv)
    assert req.state == "submitted"
    all_errors += errors
    page.close()

    # 2. A board member finds it in the queue, sees the failing check, requests changes.
    page, errors = _login(chromium, base, "bea")
    page.goto(f"{base}/approvals/")
    page.get_by_role("link", name=mv.model.name).first.click()
    failing = page.locator("tr", has_text="bias evaluation evidence present")
    expect(failing.first).to_contain_text("fail")
    _decide(page, "Request changes", "Please attach the bias evaluation.")
    expect(page.locator("#decision-panel")).to_contain_text("Changes requested")
    all_errors += errors
    page.close()

    # 3. The contributor adds the evidence and resubmits.
    page, errors = _login(chromium, base, "carol")
    page.goto(f"{base}{req.get_absolute_url()}")
    page.get_by_role("link", name="Add evidence").click()
    page.get_by_label("Kind").select_option("bias_evaluation")
    page.get_by_label("Title").fill("Subgroup fairness evaluation")
    page.get_by_label("Sha256").fill("ab" * 32)
    page.get_by_role("button", name="Save").click()
    page.goto(f"{base}{req.get_absolute_url()}")
    page.get_by_role("button", name="Resubmit for review").click()
    expect(page.locator("tr", has_text="bias evaluation evidence present").first).to_contain_text(
        "pass"
    )
    all_errors += errors
    page.close()

    # 4. Two board members approve; the risk officer completes the quorum.
    for who in ("bea", "ben", "rita"):
        page, errors = _login(chromium, base, who)
        page.goto(f"{base}{req.get_absolute_url()}")
        _decide(page, "Approve", f"Approved by {who}.")
        all_errors += errors
        if who != "rita":
            page.close()
    expect(page.locator("#decision-panel")).to_contain_text("Approved")
    expect(page.get_by_role("link", name="Signed approval (DSSE)")).to_be_visible()
    page.close()
    req.refresh_from_db()
    assert req.state == "approved" and req.attestation["payloadType"] == (
        "application/vnd.in-toto+json"
    )

    # 5. The deployment to production is recorded.
    page, errors = _login(chromium, base, "carol")
    page.goto(f"{base}{mv.get_absolute_url()}")
    page.get_by_role("link", name="Record deployment").click()
    page.get_by_label("Environment").select_option("production")
    page.get_by_label("Region").fill("eu-west-1")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Saved deployment")).to_be_visible()
    assert Deployment.objects.filter(model_version=mv, environment="production").exists()
    all_errors += errors
    page.close()

    # 6. The auditor sees the trail of the request and the signed approval.
    page, errors = _login(chromium, base, "otto")
    page.goto(f"{base}/audit/?object_type=approvals.approvalrequest&object_id={req.pk}")
    expect(page.locator("table")).to_contain_text("transition")
    page.goto(f"{base}{req.get_absolute_url()}")
    with page.expect_download() as download:
        page.get_by_role("link", name="Signed approval (DSSE)").click()
    assert download.value.suggested_filename == f"approval-{req.pk}.dsse.json"
    all_errors += errors
    page.close()

    decisions = AuditEvent.objects.filter(object_type="approvals.decision").count()
    assert decisions == 4  # request changes + three approvals
    assert all_errors == [], all_errors
