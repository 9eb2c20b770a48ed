"""The auditor's report package: one zip, every file listed with its SHA-256 in a manifest
signed by the portal key (DSSE), verifiable offline with tools/verify_audit_export.py."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from typing import Any

import rfc8785
from django.db import models
from django.template.loader import render_to_string

from lineage.reports.bom import build_bom, validate_bom
from lineage.reports.build import build_report
from portal.permissions import Access
from registry.models import DatasetVersion, ModelVersion

MANIFEST_PAYLOAD_TYPE = "application/vnd.charter.report-manifest+json"


def to_csv(report: dict[str, Any]) -> bytes:
    """One row per object: kind, id, name, role, and its facts as canonical JSON."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["kind", "id", "name", "role", "facts", "audit_events"])
    for obj in report["objects"]:
        writer.writerow(
            [
                obj["kind"],
                obj["id"],
                obj["name"],
                obj.get("role", ""),
                rfc8785.dumps(json.loads(json.dumps(obj["facts"], default=str))).decode(),
                len(obj.get("events", [])),
            ]
        )
    return out.getvalue().encode("utf-8")


def to_html(report: dict[str, Any]) -> str:
    return render_to_string("lineage/report.html", {"report": report})


def to_pdf(html: str) -> bytes:
    from weasyprint import HTML

    return HTML(string=html).write_pdf()


def _datasets(mv: ModelVersion, access: Access) -> list[tuple[DatasetVersion, str]]:
    out = []
    for role, name in (
        ("training", "training_datasets"),
        ("validation", "validation_datasets"),
        ("test", "test_datasets"),
    ):
        for dv in access.filter(getattr(mv, name).select_related("dataset")):
            out.append((dv, role))
    return out


def build_package(
    subject: models.Model,
    access: Access,
    progress: Callable[[int, str], None] = lambda pct, step: None,
) -> tuple[bytes, dict[str, Any]]:
    """The zip bytes and its manifest. ``progress(percent, step)`` is called as parts finish."""
    from portal import dsse
    from portal.keys import portal_key, public_pem

    key = portal_key()  # fail early when the portal cannot sign
    progress(5, "collecting the lineage")
    report = build_report(subject, access)
    files: dict[str, bytes] = {}
    files["report.json"] = json.dumps(report, indent=1, default=str).encode("utf-8")
    progress(30, "writing CSV and HTML")
    files["objects.csv"] = to_csv(report)
    html = to_html(report)
    files["report.html"] = html.encode("utf-8")
    progress(45, "rendering the PDF")
    files["report.pdf"] = to_pdf(html)
    mv = subject if isinstance(subject, ModelVersion) else getattr(subject, "model_version", None)
    if mv is not None:
        progress(85, "building the CycloneDX ML-BOM")
        bom = build_bom(mv, _datasets(mv, access))
        error = validate_bom(bom)
        if error is not None:
            raise ValueError(f"the ML-BOM does not validate: {error}")
        files["bom.cdx.json"] = json.dumps(bom, indent=1).encode("utf-8")
    manifest = {
        "format": "charter-report-package/1",
        "subject": report["subject"],
        "generated_at": report["generated_at"],
        "generated_by": report["generated_by"],
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    manifest_bytes = rfc8785.dumps(manifest)
    envelope = dsse.sign_envelope(
        manifest_bytes, key.key_id, key.sign, payload_type=MANIFEST_PAYLOAD_TYPE
    )
    progress(95, "signing the manifest")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
        archive.writestr("manifest.json", manifest_bytes)
        archive.writestr("manifest.dsse.json", json.dumps(envelope, indent=1))
        archive.writestr("portal_public_keys.pem", public_pem(key.public))
    progress(100, "done")
    return buffer.getvalue(), manifest
