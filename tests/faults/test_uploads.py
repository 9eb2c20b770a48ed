"""Uploads over the size limits are refused with 413 before anything is read; an upload that
fills the disk (a 256 KiB tmpfs as the media root) is refused with 507. Either way nothing is
written: no file, no row, no audit event."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Counts
from workers.models import TelemetryBatch


def _files(root: Path) -> list[str]:
    return [str(p) for p in Path(root).rglob("*") if p.is_file()] if Path(root).exists() else []


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    """A 256 KiB tmpfs: the media root of a server whose disk is full."""
    path = Path(tempfile.mkdtemp(prefix="charter-faults-disk-"))
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert mounted.returncode == 0, (
        f"the disk-full test mounts a small tmpfs and needs root: {mounted.stderr}"
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        os.rmdir(path)


def _dataset_upload(world: Any, size: int) -> dict[str, Any]:
    """A CSV file of about ``size`` bytes (random values, so nothing compresses it away)."""
    rows = [b"x,y\n"]
    length = 4
    while length < size:
        row = b"%d,%d\n" % (int.from_bytes(os.urandom(4)), int.from_bytes(os.urandom(4)))
        rows.append(row)
        length += len(row)
    data = b"".join(rows)
    upload = io.BytesIO(data)
    upload.name = "train.csv"
    return {
        "dataset": world.tree["a"]["dataset"].pk,
        "version": "2025-10",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "file": upload,
    }


@pytest.mark.django_db
def test_oversized_bodies_and_uploads_get_413_and_write_nothing(world: Any, settings: Any) -> None:
    settings.CHARTER_MAX_BODY_BYTES = 20_000
    settings.CHARTER_MAX_UPLOAD_BYTES = 100_000
    settings.CHARTER_TELEMETRY_MAX_UPLOAD_BYTES = 50_000
    client = world.client("contributor_a")
    before = Counts.take()
    # a JSON body over the body limit
    big = {"model": world.tree["a"]["model"].pk, "version": "9", "limitations": "x" * 30_000}
    response = client.post(
        "/api/v1/model-versions/", json.dumps(big), content_type="application/json"
    )
    assert response.status_code == 413
    assert response.json()["detail"].endswith("the limit is 20000 bytes.")
    # a multipart upload over the upload limit
    response = client.post(
        "/api/v1/dataset-versions/", _dataset_upload(world, 150_000), format="multipart"
    )
    assert response.status_code == 413
    assert "the limit is 100000 bytes" in response.json()["detail"]
    # a telemetry file over the telemetry upload limit (below the general one)
    dep = world.tree["a"]["deployment"]
    upload = io.BytesIO(b"age,income\n" + b"40,1000\n" * 8000)
    upload.name = "batch.csv"
    response = client.post(
        f"/api/v1/deployments/{dep.pk}/telemetry/",
        {"idempotency_key": "big-1", "file": upload},
        format="multipart",
    )
    assert response.status_code == 413, response.content[:300]
    assert "50000" in json.dumps(response.json())
    before.unchanged()
    assert not TelemetryBatch.objects.exists()
    assert _files(settings.MEDIA_ROOT) == []


@pytest.mark.django_db
def test_upload_that_fills_the_disk_gets_507_and_leaves_no_partial_file(
    world: Any, settings: Any, tiny_disk: Path
) -> None:
    settings.MEDIA_ROOT = tiny_disk
    client = world.client("contributor_a")
    before = Counts.take()
    response = client.post(
        "/api/v1/dataset-versions/", _dataset_upload(world, 600_000), format="multipart"
    )
    assert response.status_code == 507, response.content[:300]
    assert "storage is full" in response.json()["detail"]
    before.unchanged()  # no dataset version, no audit event
    assert _files(tiny_disk) == []  # no partial file
    # once there is room again, the same upload goes through
    response = client.post(
        "/api/v1/dataset-versions/", _dataset_upload(world, 60_000), format="multipart"
    )
    assert response.status_code == 201, response.json()
    assert len(_files(tiny_disk)) == 1
