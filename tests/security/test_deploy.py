"""Production settings: `manage.py check --deploy` reports nothing; the hardened values hold."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
# The environment a deployment sets, and nothing of the tests' own (DEBUG, OIDC, ...).
_DROP = (
    "DEBUG",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "CHARTER_PRODUCTION",
    "CHARTER_SIGNING_KEY",
    "SECRET_KEY",
    "OIDC_",
)


def clean_env(tmp_path: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP)}
    env["CHARTER_VAR_DIR"] = str(tmp_path / "var")
    env.update(extra or {})
    return env


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    s = connection.settings_dict
    # Production reads the portal's signing key from a file it is given (never generated).
    key_file = tmp_path / "portal-signing-key.pem"
    key_file.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return clean_env(
        tmp_path,
        {
            "CHARTER_PRODUCTION": "true",
            "CHARTER_SIGNING_KEY_FILE": str(key_file),
            "SECRET_KEY": secrets.token_urlsafe(60),
            "ALLOWED_HOSTS": "charter.example.org",
            "DATABASE_URL": f"postgres://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}",
            **extra,
        },
    )


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_nothing_in_production(tmp_path: Path, db: Any) -> None:
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "DEBUG")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNING" not in result.stderr and "ERROR" not in result.stderr


def test_check_deploy_reports_nothing_with_sso_configured(tmp_path: Path, db: Any) -> None:
    from tests.security.test_auth import OIDC

    result = manage(production_env(tmp_path, **OIDC), "check", "--deploy", "--fail-level", "DEBUG")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_values(tmp_path: Path, db: Any) -> None:
    code = (
        "import json; from django.conf import settings as s; print('VALUES', json.dumps({"
        "'hsts': s.SECURE_HSTS_SECONDS, 'sub': s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
        "'preload': s.SECURE_HSTS_PRELOAD, 'ssl': s.SECURE_SSL_REDIRECT, "
        "'session_secure': s.SESSION_COOKIE_SECURE, 'csrf_secure': s.CSRF_COOKIE_SECURE, "
        "'session_httponly': s.SESSION_COOKIE_HTTPONLY, 'csrf_httponly': s.CSRF_COOKIE_HTTPONLY, "
        "'hasher': s.PASSWORD_HASHERS[0], 'idle': s.CHARTER_SESSION_IDLE_SECONDS, "
        "'age': s.SESSION_COOKIE_AGE, 'backends': s.AUTHENTICATION_BACKENDS, "
        "'middleware': s.MIDDLEWARE}))"
    )
    result = manage(production_env(tmp_path), "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("VALUES "))
    values = json.loads(line.removeprefix("VALUES "))
    assert values["hsts"] == 31536000 and values["sub"] and values["preload"] and values["ssl"]
    assert values["session_secure"] and values["csrf_secure"]
    assert values["session_httponly"] and values["csrf_httponly"]
    assert values["hasher"] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    assert values["idle"] == 1800 and values["age"] == 8 * 3600
    assert values["backends"][0] == "axes.backends.AxesStandaloneBackend"
    assert values["middleware"][-1] == "axes.middleware.AxesMiddleware"
    auth = values["middleware"].index("django.contrib.auth.middleware.AuthenticationMiddleware")
    assert values["middleware"][auth + 1] == "portal.security.SessionExpiryMiddleware"


def test_media_inside_static_is_a_deploy_error(tmp_path: Path, db: Any) -> None:
    env = production_env(tmp_path, CHARTER_MEDIA_ROOT=str(ROOT / "static" / "uploads"))
    result = manage(env, "check", "--deploy")
    assert result.returncode != 0
    assert "charter.E001" in result.stderr and "overlaps a static directory" in result.stderr
