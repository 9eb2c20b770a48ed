"""Free text renders as sanitised Markdown; uploads are sniffed, stored outside the web root and
downloaded as attachments. Everything goes through the real forms, API and pages."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from approvals import services as approvals
from audits.models import AuditEvent
from portal.markdown import render_markdown
from portal.permissions import Access
from registry.models import DatasetVersion

PAYLOADS = [
    "<script>alert('xss-1')</script>",
    "<img src=x onerror=alert('xss-2')>",
    "<svg onload=alert('xss-3')>",
    "[click](javascript:alert('xss-4'))",
    "[click](JaVaScRiPt:alert('xss-5'))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCg2KTwvc2NyaXB0Pg==)",
    "<a href=\"javascript:alert('xss-7')\">x</a>",
    "<iframe src=//evil.example></iframe>",
    "<style>body{display:none}</style>",
    '<p style="x" onclick="alert(\'xss-8\')">p</p>',
    "[x](vbscript:msgbox('xss-9'))",
    "</div></section><script>alert('xss-10')</script>",
    "<details open ontoggle=alert('xss-11')>",
]
MALICIOUS = "\n\n".join(PAYLOADS)
GOOD = "Use **only** for [reviewed](https://example.org/policy) cases:\n\n- one\n- two"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_no_active_content(html: str) -> None:
    """No element, attribute or URL that a browser would run in the page's content, as an
    HTML parser (like the browser's) reads it; escaped text such as ``&lt;img onerror=``
    is text, not a tag."""
    parser = _Tags()
    parser.feed(html.split('<main id="content">', 1)[1])  # the shell's logo is an inline <svg>
    for tag, attrs in parser.tags:
        where = f"<{tag} {attrs}>"
        assert tag not in {"img", "svg", "iframe", "style", "details", "object", "embed"}, where
        if tag == "script":
            assert dict(attrs).get("type") == "application/json" or "src" in dict(attrs), where
        for name, value in attrs:
            assert not name.startswith("on"), where
            if name in ("href", "src", "action", "formaction"):
                url = (value or "").strip().lower()
                assert not url.startswith(("javascript:", "vbscript:", "data:")), where


def assert_markdown_rendered(html: str) -> None:
    assert "<strong>only</strong>" in html
    assert (
        '<a href="https://example.org/policy" rel="noopener noreferrer nofollow">reviewed</a>'
        in html
    )
    assert "<li>one</li>" in html


@pytest.fixture
def contributor(world: Any) -> Client:
    client = Client()
    client.force_login(world.users["contributor_a"])
    return client


def test_datasheet_payloads_are_inert_on_the_datasheet_page(
    world: Any, contributor: Client
) -> None:
    ds = world.tree["a"]["dataset"]
    response = contributor.post(
        reverse("datasetversion-create", args=[ds.pk]),
        {
            "version": "xss-1",
            "motivation": GOOD,
            "composition": MALICIOUS,
            "uses": "<b>bold</b> & <i>raw html</i> is shown as text",
            "sensitivity": "internal",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    dv = DatasetVersion.objects.get(dataset=ds, version="xss-1")
    assert dv.composition == MALICIOUS  # stored as typed; only its rendering is sanitised
    html = Client()
    html.force_login(world.users["board"])
    page = html.get(dv.get_absolute_url()).content.decode()
    assert_no_active_content(page)
    assert_markdown_rendered(page)
    assert "&lt;script&gt;alert('xss-1')&lt;/script&gt;" in page  # shown as text
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;i&gt;raw html&lt;/i&gt;" in page


def test_model_card_payloads_are_inert_on_the_card_and_review_pages(
    world: Any, contributor: Client
) -> None:
    mv = world.tree["a"]["model_version"]
    response = contributor.post(
        reverse("modelversion-edit", args=[mv.pk]),
        {
            "version": mv.version,
            "intended_use": GOOD,
            "out_of_scope_uses": MALICIOUS,
            "limitations": MALICIOUS,
            "ethical_considerations": "[ok](mailto:ethics@example.org)",
            "metrics": '{"auc": 0.9}',
            "subgroup_metrics": '{"<script>alert(\'xss-12\')</script>": {"recall": 0.7}}',
            "parameters": "{}",
            "environment": "{}",
            "training_datasets": [world.tree["a"]["dataset_version"].pk],
        },
    )
    assert response.status_code == 302, response.content[:3000]
    mv.refresh_from_db()
    assert mv.limitations == MALICIOUS
    board = Client()
    board.force_login(world.users["board"])
    card = board.get(mv.get_absolute_url()).content.decode()
    assert_no_active_content(card)
    assert_markdown_rendered(card)
    assert '<a href="mailto:ethics@example.org" rel="noopener noreferrer nofollow">ok</a>' in card
    # the subgroup name reaches the chart's JSON with "<" escaped, so it cannot close the tag
    assert "<script>alert('xss-12')" not in card

    req = approvals.create_request(Access(user=world.users["contributor_a"]), model_version=mv)
    review = board.get(reverse("approvals:review", args=[req.pk])).content.decode()
    assert_no_active_content(review)
    assert_markdown_rendered(review)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("**b**", "<p><strong>b</strong></p>\n"),
        ("<script>x</script>", "<p>&lt;script&gt;x&lt;/script&gt;</p>\n"),
        ("[a](javascript:alert(1))", "<p>[a](javascript:alert(1))</p>\n"),
        ("[a](/models/)", '<p><a href="/models/" rel="noopener noreferrer nofollow">a</a></p>\n'),
        ("| a |\n|:-:|\n| 1 |", "<table>\n<thead>\n<tr>\n<th>a</th>"),
        ("![i](https://tracker.example/p.png)", "<p></p>\n"),  # no remote images
        ("", ""),
        (None, ""),
    ],
)
def test_markdown_allow_list(text: str | None, expected: str) -> None:
    assert str(render_markdown(text)).startswith(expected)
    assert "style=" not in str(render_markdown(text))


# ---------------------------------------------------------------- uploads

CSV = b"age,income\n31,52000\n45,61000\n"


def _upload(client: Client, ds: Any, name: str, content: bytes, content_type: str) -> Any:
    return client.post(
        reverse("datasetversion-create", args=[ds.pk]),
        {
            "version": f"up-{name}",
            "sensitivity": "internal",
            "file": SimpleUploadedFile(name, content, content_type=content_type),
        },
    )


def test_a_csv_upload_is_stored_under_media_outside_static(world: Any, contributor: Client) -> None:
    ds = world.tree["a"]["dataset"]
    assert _upload(contributor, ds, "people.csv", CSV, "text/csv").status_code == 302
    dv = DatasetVersion.objects.get(version="up-people.csv")
    stored = Path(dv.file.path).resolve()
    media = Path(settings.MEDIA_ROOT).resolve()
    assert media in stored.parents
    for static_dir in (Path(settings.STATIC_ROOT), *map(Path, settings.STATICFILES_DIRS)):
        assert static_dir.resolve() not in stored.parents
    # neither WhiteNoise nor any URL serves it by its storage path
    anyone = Client()
    anyone.force_login(world.users["admin"])
    for url in (f"/media/{dv.file.name}", f"/static/{dv.file.name}", f"/{dv.file.name}"):
        assert anyone.get(url).status_code == 404, url


@pytest.mark.parametrize(
    ("name", "content", "content_type", "problem"),
    [
        ("page.html", b"<html><script>alert(1)</script></html>", "text/html", "only .csv"),
        ("logo.svg", b"<svg onload=alert(1)></svg>", "image/svg+xml", "only .csv"),
        (
            "data.csv",
            b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>",
            "text/csv",
            "active content",
        ),
        ("data.csv", b"a,b\n<script>alert(1)</script>,2\n", "text/csv", "active content"),
        ("data.csv", b"a,b\n1,2\n", "text/html", "does not match"),
        ("data.csv", b"MZ\x90\x00\x03\x00\x00\x00", "text/csv", "binary content"),
        ("data.parquet", b"a,b\n1,2\n", "application/octet-stream", "not a Parquet file"),
        (
            "data.csv",
            b"\xff\xfe\xfa\xfb not utf-8 at all, just bytes ,,,\n",
            "text/csv",
            "must be UTF-8",
        ),
    ],
)
def test_uploads_whose_name_type_and_content_disagree_are_refused(
    world: Any, contributor: Client, name: str, content: bytes, content_type: str, problem: str
) -> None:
    ds = world.tree["a"]["dataset"]
    before = AuditEvent.objects.count()
    response = _upload(contributor, ds, name, content, content_type)
    assert response.status_code == 200  # the form again, with the error on the file field
    errors = response.context["form"].errors
    assert "file" in errors and problem in " ".join(errors["file"]), errors
    assert not DatasetVersion.objects.filter(version=f"up-{name}").exists()
    assert AuditEvent.objects.count() == before


def test_the_api_refuses_a_disguised_upload_naming_the_field(world: Any) -> None:
    client = world.client("contributor_a")
    ds = world.tree["a"]["dataset"]
    response = client.post(
        "/api/v1/dataset-versions/",
        {
            "dataset": ds.pk,
            "version": "api-html",
            "file": SimpleUploadedFile("x.csv", b"<html><body onload=alert(1)>", "text/csv"),
        },
        format="multipart",
    )
    assert response.status_code == 400, response.content
    assert "active content" in " ".join(response.json()["errors"]["file"])


def test_a_parquet_upload_passes_the_sniff(world: Any, contributor: Client) -> None:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"age": [31, 45]}), buffer)
    ds = world.tree["a"]["dataset"]
    response = _upload(contributor, ds, "t.parquet", buffer.getvalue(), "application/octet-stream")
    assert response.status_code == 302


def test_stored_files_download_as_attachments_never_inline(db: Any) -> None:
    """A stored file with markup in it (say, from before the upload sniff) still downloads as
    an attachment: octet-stream, nosniff, and a sandboxing CSP, never rendered inline."""
    from django.core.files.base import ContentFile
    from rest_framework.test import APIClient

    from tests.retraining import rig
    from workers import retraining

    w = rig.world(risk_tier="high", upload=False)
    markup = b"<html><body><script>alert(document.cookie)</script></body></html>"
    w.dataset_version.file.save("report.html", ContentFile(markup), save=True)
    rig.template(w, entrypoint=["{python}", "-c", "pass"], datasets=[w.dataset_version.pk])
    job = retraining.request_job(rig.SYSTEM, model=w.model, trigger="person")
    assert w.dataset_version in job.dataset_versions.all()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {retraining._issue_token(job)}")
    response = client.get(f"/api/v1/retraining-jobs/{job.pk}/datasets/{w.dataset_version.pk}/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == markup
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert AuditEvent.objects.filter(
        action="download", object_id=str(w.dataset_version.pk)
    ).exists()
