"""The OpenAPI schema generates without warnings; production settings pass check --deploy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_openapi_schema_validates_with_warnings_as_failures(tmp_path: Path) -> None:
    out = tmp_path / "schema.yaml"
    result = _manage("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    schema = out.read_text()
    for path in ("/api/v1/model-versions/", "/api/v1/tokens/", "/api/v1/attestations/"):
        assert path in schema
    assert "bearerAuth" in schema and "'413':" in schema


def test_docs_pages_render_with_self_hosted_assets(world: Any) -> None:
    client = world.client("viewer_a")
    assert client.get("/api/schema/").status_code == 200
    for url in ("/api/docs/", "/api/redoc/"):
        html = client.get(url).content.decode()
        external = re.findall(r"""(?:src|href)=["'](https?://[^"']+)""", html)
        assert external == [], f"{url} loads {external}"


def test_production_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    env = {"CHARTER_PRODUCTION": "true", "SECRET_KEY": "", "CHARTER_VAR_DIR": str(tmp_path)}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.mark.django_db
def test_pages_carry_a_strict_content_security_policy(client: Any) -> None:
    """No inline scripts anywhere: script-src is this origin only (the e2e tests load the
    pages in Chromium and fail on any CSP violation reported to the console)."""
    response = client.get("/login/")
    policy = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert "<script>" not in response.content.decode()
