"""Login throttling and lockout, session expiry, password hashing and SSO, through real requests."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import identify_hasher
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from audits.models import AuditEvent
from portal.security import SESSION_AUTH_AT, SESSION_SEEN_AT
from tests import factories as f

LIMIT = 5


@pytest.fixture
def limits(settings: Any) -> Any:
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    return settings


def login(client: Client, username: str, password: str) -> Any:
    return client.post("/login/", {"username": username, "password": password})


def events_after(seq: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e.action, e.changes)
        for e in AuditEvent.objects.filter(
            seq__gt=seq, action__in=["login", "login_failed", "lockout", "unlock"]
        ).order_by("seq")
    ]


def head() -> int:
    last = AuditEvent.objects.order_by("-seq").first()
    return last.seq if last else 0


# ---------------------------------------------------------------- lockout


@pytest.mark.django_db
def test_repeated_failures_lock_out_even_the_right_password(limits: Any) -> None:
    f.user("ann")
    client = Client()
    start = head()
    for i in range(LIMIT - 1):
        response = login(client, "ann", f"wrong-{i}")
        assert response.status_code == 200  # the form again, with its error
        assert "Please enter a correct username and password" in response.content.decode()
    response = login(client, "ann", "wrong-last")  # the LIMIT-th failure locks out
    assert response.status_code == 403
    assert "Sign-in locked" in response.content.decode()
    assert "recorded in the audit log" in response.content.decode()

    response = login(client, "ann", "pw-ann")  # right password, still refused
    assert response.status_code == 403 and "_auth_user_id" not in client.session
    assert client.get("/").status_code == 302  # not signed in

    events = events_after(start)
    failed = [c for a, c in events if a == "login_failed"]
    lockouts = [c for a, c in events if a == "lockout"]
    # exactly one event per failed attempt (LIMIT wrong passwords + the refused right one)
    assert len(failed) == LIMIT + 1
    assert all(c["username"] == "ann" for c in failed)
    assert [c.get("locked_out", False) for c in failed] == [False] * LIMIT + [True]
    assert lockouts == [
        {
            "username": "ann",
            "ip_address": "127.0.0.1",
            "failures": LIMIT,
            "cool_off_seconds": 900,
        }
    ]
    assert [a for a, _ in events].count("login") == 0
    # no attempted password anywhere in the chain
    assert not AuditEvent.objects.filter(seq__gt=start, payload__contains="wrong-").exists()


@pytest.mark.django_db
def test_lockout_is_per_username_and_address(limits: Any) -> None:
    f.user("ann")
    f.user("bob")
    attacker = Client(REMOTE_ADDR="10.9.8.7")
    for i in range(LIMIT):
        login(attacker, "ann", f"wrong-{i}")
    assert login(attacker, "ann", "pw-ann").status_code == 403
    # the same user from another address, and another user from the attacker's, still work
    assert login(Client(REMOTE_ADDR="10.1.1.1"), "ann", "pw-ann").status_code == 302
    assert login(attacker, "bob", "pw-bob").status_code == 302


@pytest.mark.django_db
def test_lockout_ends_after_the_cool_off(limits: Any) -> None:
    from axes.models import AccessAttempt

    f.user("ann")
    client = Client()
    for i in range(LIMIT):
        login(client, "ann", f"wrong-{i}")
    assert login(client, "ann", "pw-ann").status_code == 403
    # the cool-off passes: move the recorded attempts back beyond it
    past = timezone.now() - limits.AXES_COOLOFF_TIME - timedelta(seconds=5)
    assert AccessAttempt.objects.filter(username="ann").update(attempt_time=past) == 1
    assert login(client, "ann", "pw-ann").status_code == 302
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_an_admin_unlocks_with_the_audited_command(limits: Any) -> None:
    f.user("ann")
    client = Client()
    for i in range(LIMIT):
        login(client, "ann", f"wrong-{i}")
    assert login(client, "ann", "pw-ann").status_code == 403
    start = head()
    out = StringIO()
    call_command("unlock_login", "ann", stdout=out)
    assert "unlocked ann (1 lockout records)" in out.getvalue()
    unlock = AuditEvent.objects.get(seq__gt=start, action="unlock")
    assert unlock.changes == {"username": "ann", "ip_address": "", "cleared": 1}
    assert unlock.channel == "command"
    assert login(client, "ann", "pw-ann").status_code == 302


@pytest.mark.django_db
def test_a_successful_login_resets_the_count(limits: Any) -> None:
    f.user("ann")
    client = Client()
    for i in range(LIMIT - 1):
        login(client, "ann", f"wrong-{i}")
    assert login(client, "ann", "pw-ann").status_code == 302
    client.post("/logout/")
    for i in range(LIMIT - 1):  # another LIMIT-1 failures: not locked, the count restarted
        assert login(client, "ann", f"again-{i}").status_code == 200
    assert login(client, "ann", "pw-ann").status_code == 302


@pytest.mark.django_db
def test_admin_login_is_throttled_too(limits: Any) -> None:
    f.user("root", is_staff=True, is_superuser=True)
    client = Client()
    for i in range(LIMIT):
        client.post("/admin/login/", {"username": "root", "password": f"bad-{i}"})
    response = client.post("/admin/login/", {"username": "root", "password": "pw-root"})
    assert response.status_code == 403
    assert AuditEvent.objects.filter(action="lockout", object_repr="root").count() == 1


# ---------------------------------------------------------------- sessions


def _age_session(client: Client, **ago: float) -> None:
    session = client.session
    now = time.time()
    for key, seconds in ago.items():
        session[key] = now - seconds
    session.save()


@pytest.mark.django_db
def test_an_idle_session_is_logged_out(settings: Any) -> None:
    settings.CHARTER_SESSION_IDLE_SECONDS = 600
    user = f.user("ann")
    client = Client()
    assert login(client, "ann", "pw-ann").status_code == 302
    assert client.session[SESSION_AUTH_AT] == pytest.approx(time.time(), abs=5)
    assert client.get("/").status_code == 200
    # nine minutes idle: still signed in, and the request counts as activity
    _age_session(client, **{SESSION_SEEN_AT: 540})
    assert client.get("/").status_code == 200
    assert time.time() - client.session[SESSION_SEEN_AT] < 5
    # eleven minutes idle: signed out, sent to the login page, audited with the reason
    start = head()
    _age_session(client, **{SESSION_SEEN_AT: 660})
    response = client.get("/models/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert "_auth_user_id" not in client.session
    logout = AuditEvent.objects.get(seq__gt=start, action="logout")
    assert logout.actor_id == user.pk and logout.changes == {"reason": "idle_timeout"}
    # the API refuses the stale session too
    _ = client.get("/")
    assert client.get("/api/v1/model-versions/").status_code in (401, 403)


@pytest.mark.django_db
def test_a_session_ends_at_its_absolute_age_despite_activity(settings: Any) -> None:
    settings.SESSION_COOKIE_AGE = 8 * 3600
    f.user("ann")
    client = Client()
    login(client, "ann", "pw-ann")
    _age_session(client, **{SESSION_AUTH_AT: 8 * 3600 + 10, SESSION_SEEN_AT: 5})
    start = head()
    assert client.get("/").status_code == 302
    assert AuditEvent.objects.get(seq__gt=start, action="logout").changes == {
        "reason": "session_age"
    }


@pytest.mark.django_db
def test_session_stamps_are_written_at_most_once_a_minute(settings: Any) -> None:
    f.user("ann")
    client = Client()
    login(client, "ann", "pw-ann")
    _age_session(client, **{SESSION_SEEN_AT: 20})
    before = client.session[SESSION_SEEN_AT]
    client.get("/")
    assert client.session[SESSION_SEEN_AT] == before  # 20 s: not rewritten
    _age_session(client, **{SESSION_SEEN_AT: 61})
    client.get("/")
    assert client.session[SESSION_SEEN_AT] > before


# ---------------------------------------------------------------- password hashing


def test_production_hashers_put_argon2_first() -> None:
    from portal import settings as production

    assert production.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    # the older ones stay, so existing hashes verify and are upgraded at the next login
    assert "django.contrib.auth.hashers.PBKDF2PasswordHasher" in production.PASSWORD_HASHERS


@pytest.mark.django_db
def test_new_passwords_get_argon2_and_old_hashes_upgrade(settings: Any) -> None:
    from portal import settings as production

    settings.PASSWORD_HASHERS = production.PASSWORD_HASHERS  # undo the tests' fast MD5
    user = get_user_model().objects.create_user("argon", password="correct horse battery")
    assert user.password.startswith("argon2$argon2id$")
    assert identify_hasher(user.password).algorithm == "argon2"
    # a PBKDF2 hash from before is accepted and re-hashed with Argon2 at login
    from django.contrib.auth.hashers import make_password

    old = get_user_model().objects.create(
        username="legacy", password=make_password("old-pass-1234", hasher="pbkdf2_sha256")
    )
    assert login(Client(), "legacy", "old-pass-1234").status_code == 302
    old.refresh_from_db()
    assert old.password.startswith("argon2$")


# ---------------------------------------------------------------- single sign-on

OIDC = {
    "OIDC_RP_CLIENT_ID": "charter",
    "OIDC_RP_CLIENT_SECRET": "s3cret",
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "https://idp.example.org/authorize",
    "OIDC_OP_TOKEN_ENDPOINT": "https://idp.example.org/token",
    "OIDC_OP_USER_ENDPOINT": "https://idp.example.org/userinfo",
    "OIDC_OP_JWKS_ENDPOINT": "https://idp.example.org/jwks",
}


@pytest.fixture
def sso(settings: Any) -> Any:
    for name, value in OIDC.items():
        setattr(settings, name, value)
    settings.CHARTER_OIDC_ENABLED = True
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "portal.oidc.OIDCBackend",
    ]
    return settings


def test_oidc_settings_turn_on_the_backend_only_when_set(tmp_path: Any) -> None:
    """The settings module, imported with and without the OIDC_* environment."""
    import subprocess
    import sys

    from tests.security.test_deploy import ROOT, clean_env

    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='portal.settings'; "
        "from django.conf import settings; "
        "print(settings.CHARTER_OIDC_ENABLED, 'portal.oidc.OIDCBackend' in "
        "settings.AUTHENTICATION_BACKENDS, settings.AUTHENTICATION_BACKENDS[0])"
    )

    def run(extra: dict[str, str]) -> subprocess.CompletedProcess:
        env = clean_env(tmp_path, extra)
        return subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert run({}).stdout.split() == ["False", "False", "axes.backends.AxesStandaloneBackend"]
    assert run(OIDC).stdout.split() == ["True", "True", "axes.backends.AxesStandaloneBackend"]
    partial = run({"OIDC_RP_CLIENT_ID": "charter"})
    assert partial.returncode != 0 and "only some are set" in partial.stderr


@pytest.mark.django_db
def test_login_page_offers_sso_only_when_configured(client: Client, settings: Any) -> None:
    assert "oidc/authenticate" not in client.get("/login/").content.decode()
    assert client.get("/oidc/authenticate/").status_code == 404
    for name, value in OIDC.items():
        setattr(settings, name, value)
    settings.CHARTER_OIDC_ENABLED = True
    html = client.get("/login/?next=/models/").content.decode()
    assert 'href="/oidc/authenticate/?next=/models/"' in html and "Sign in with SSO" in html


@pytest.mark.django_db
def test_sso_redirects_to_the_idp_with_state_nonce_and_pkce(client: Client, sso: Any) -> None:
    from urllib.parse import parse_qs, urlsplit

    response = client.get("/oidc/authenticate/?next=/models/")
    assert response.status_code == 302
    url = urlsplit(response["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == OIDC["OIDC_OP_AUTHORIZATION_ENDPOINT"]
    query = parse_qs(url.query)
    assert query["client_id"] == ["charter"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["http://testserver/oidc/callback/"]
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    assert query["state"][0] in client.session["oidc_states"]


@pytest.mark.django_db
def test_sso_callback_without_a_started_login_fails_closed(client: Client, sso: Any) -> None:
    """A forged callback (no state in the session) never reaches the IdP; it lands on the
    login page with an error, signed out."""
    response = client.get("/oidc/callback/?code=abc&state=forged")
    assert response.status_code == 302 and response["Location"] == "/login/?sso=failed"
    assert "_auth_user_id" not in client.session
    page = client.get(response["Location"]).content.decode()
    assert "Single sign-on did not complete" in page


@pytest.mark.django_db
def test_password_login_never_calls_the_sso_backend(client: Client, sso: Any) -> None:
    f.user("ann")
    # a ?code=&state= on the login form must not send anything to the IdP (no network here:
    # reaching it would raise); the password login works as usual
    response = client.post("/login/?code=x&state=y", {"username": "ann", "password": "pw-ann"})
    assert response.status_code == 302
