"""Charter settings, read from the environment.

With nothing set, Charter runs embedded: SQLite and a file-system Celery broker
under ``var/``, a secret key generated once into ``var/secret_key``. Set
``CHARTER_PRODUCTION=true`` (plus ``SECRET_KEY``, ``DATABASE_URL``,
``ALLOWED_HOSTS``) for a hardened deployment; ``manage.py check --deploy``
reports nothing then.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from portal.env import ConfigError, env_bool, env_int, env_list, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CHARTER_VAR_DIR", str(BASE_DIR / "var")))

PRODUCTION = env_bool("CHARTER_PRODUCTION", False)
DEBUG = env_bool("DEBUG", False)


def _local_secret_key() -> str:
    """The embedded default's key: generated once into var/, never committed."""
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(64)
    path.write_text(key)
    path.chmod(0o600)
    return key


def _oidc_enabled(*required: str) -> bool:
    """SSO is on when every OIDC_* value it needs is set; a partial set is a mistake."""
    if not any(required):
        return False
    if not all(required):
        raise ConfigError(
            "OIDC single sign-on needs OIDC_RP_CLIENT_ID, OIDC_RP_CLIENT_SECRET, "
            "OIDC_OP_AUTHORIZATION_ENDPOINT, OIDC_OP_TOKEN_ENDPOINT, OIDC_OP_USER_ENDPOINT "
            "(and OIDC_OP_JWKS_ENDPOINT for RS/ES signatures); only some are set"
        )
    return True


SECRET_KEY = env_secret("SECRET_KEY") or ""
if not SECRET_KEY:
    if PRODUCTION:
        raise ConfigError(
            "SECRET_KEY (or SECRET_KEY_FILE) must be set when CHARTER_PRODUCTION=true"
        )
    SECRET_KEY = _local_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "portal",
    "audits",
    "registry",
    "lineage",
    "approvals",
    "workers",
    "axes",  # login throttling and lockout (portal/security.py audits it)
]

MIDDLEWARE = [
    # Probes (and /metrics with a token or from an allowed address) are answered first: no
    # host check or HTTPS redirect, which a kubelet or a scraper on a pod IP would fail.
    "portal.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "portal.middleware.RequestContextMiddleware",
    "portal.metrics.RequestMetricsMiddleware",
    "portal.logging.AccessLogMiddleware",
    "portal.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.security.SessionExpiryMiddleware",
    "portal.idempotency.IdempotencyMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a lockout into the 403 lockout page
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.roles",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'charter.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        # a persistent connection the server dropped (restart, failover) is replaced
        # before a request uses it, instead of failing that request
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend with savepoints sent along with the next statement (one round trip
    # instead of three for a nested atomic block): portal/db/postgresql/base.py
    DATABASES["default"]["ENGINE"] = "portal.db.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out clients
    "portal.auth.SessionBackend",  # Django's ModelBackend, one statement per session user
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row; anonymous sees nothing
GUARDIAN_RAISE_403 = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
# English only: nothing is translated, and with translation machinery on every date, number
# and template lookup asks which language is active
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = not PRODUCTION
MEDIA_ROOT = Path(env_str("CHARTER_MEDIA_ROOT", str(VAR_DIR / "media")))
# Archived audit segments (signed zips); keep this on storage with its own retention.
AUDIT_ARCHIVE_DIR = Path(env_str("CHARTER_AUDIT_ARCHIVE_DIR", str(VAR_DIR / "audit-archive")))
# Uploads: a write that fails half-way (disk full) removes its partial file (portal/storage.py).
STORAGES = {
    "default": {"BACKEND": "portal.storage.CleanFileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_URL = "/media/"  # never served directly: downloads go through permission-checked views

# Request size limits: bodies over these get a 413 before any parsing.
CHARTER_MAX_BODY_BYTES = env_int("CHARTER_MAX_BODY_BYTES", 5 * 1024 * 1024)
CHARTER_MAX_UPLOAD_BYTES = env_int("CHARTER_MAX_UPLOAD_BYTES", 200 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = CHARTER_MAX_BODY_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024

# API tokens
# Environments where a deployment needs an approved, unexpired request and a verified
# artifact signature (approvals/gate.py).
CHARTER_GATED_ENVIRONMENTS = env_str("CHARTER_GATED_ENVIRONMENTS", "production").split(",")
# Used in notification emails.
CHARTER_BASE_URL = env_str("CHARTER_BASE_URL", "http://127.0.0.1:8000")
# Idempotency-Key on API writes (portal/idempotency.py)
CHARTER_IDEMPOTENCY_TTL_HOURS = env_int("CHARTER_IDEMPOTENCY_TTL_HOURS", 48)
CHARTER_IDEMPOTENCY_PENDING_SECONDS = env_int("CHARTER_IDEMPOTENCY_PENDING_SECONDS", 300)
CHARTER_TOKEN_DEFAULT_DAYS = env_int("CHARTER_TOKEN_DEFAULT_DAYS", 90)
CHARTER_TOKEN_LAST_USED_RESOLUTION_S = 60
# The API token and session-user lookups are prepared statements (PostgreSQL session
# state); turn off behind a connection pooler in transaction mode (PgBouncer's
# pool_mode=transaction).
CHARTER_DB_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)

# Retraining executors (workers/executors/): name -> {"class": dotted path, "options": {...}},
# from CHARTER_EXECUTORS as JSON; the local-process executor when unset.
try:
    CHARTER_EXECUTORS = json.loads(
        env_str(
            "CHARTER_EXECUTORS",
            '{"local": {"class": "workers.executors.local.LocalExecutor", "options": {}}}',
        )
    )
except ValueError as _exc:
    raise ConfigError(f"CHARTER_EXECUTORS is not valid JSON: {_exc}") from _exc
CHARTER_DEFAULT_EXECUTOR = env_str("CHARTER_DEFAULT_EXECUTOR", "local")
# The portal URL as a retraining job reaches it (defaults to CHARTER_BASE_URL).
CHARTER_JOB_PORTAL_URL = env_str("CHARTER_JOB_PORTAL_URL", "")
# A job's token lives for its time limit plus this margin (then expires; revoked at its end).
CHARTER_JOB_TOKEN_MARGIN_S = env_int("CHARTER_JOB_TOKEN_MARGIN_S", 3600)
# Polling a running job: first delay, doubled while nothing changes, up to the maximum.
CHARTER_RETRAINING_POLL_BASE_S = float(env_str("CHARTER_RETRAINING_POLL_BASE_S", "2"))
CHARTER_RETRAINING_POLL_MAX_S = float(env_str("CHARTER_RETRAINING_POLL_MAX_S", "60"))

# Telemetry intake (workers/): requests over these limits get 413; nothing is stored.
CHARTER_TELEMETRY_MAX_BODY_BYTES = env_int("CHARTER_TELEMETRY_MAX_BODY_BYTES", 5 * 1024 * 1024)
CHARTER_TELEMETRY_MAX_ROWS = env_int("CHARTER_TELEMETRY_MAX_ROWS", 50_000)
CHARTER_TELEMETRY_MAX_UPLOAD_BYTES = env_int(
    "CHARTER_TELEMETRY_MAX_UPLOAD_BYTES", 100 * 1024 * 1024
)
CHARTER_TELEMETRY_MAX_UPLOAD_ROWS = env_int("CHARTER_TELEMETRY_MAX_UPLOAD_ROWS", 2_000_000)
# A batch's fold is queued this many seconds after it is accepted, so that one fold task finds
# the batches that arrived meanwhile and folds them together (workers.services.fold_batch):
# a window is read and written once per few seconds instead of once per batch. 0: at once.
CHARTER_TELEMETRY_FOLD_DELAY_S = env_int("CHARTER_TELEMETRY_FOLD_DELAY_S", 5)
# Default window length (a deployment's MonitoringConfig may override it).
CHARTER_TELEMETRY_WINDOW_SECONDS = env_int("CHARTER_TELEMETRY_WINDOW_SECONDS", 3600)
# How far a batch's timestamp may lie in the past (days) or the future (seconds).
CHARTER_TELEMETRY_MAX_AGE_DAYS = env_int("CHARTER_TELEMETRY_MAX_AGE_DAYS", 7)
CHARTER_TELEMETRY_MAX_CLOCK_SKEW_S = env_int("CHARTER_TELEMETRY_MAX_CLOCK_SKEW_S", 300)
# Folded batches (their idempotency keys and responses) are kept this long, then pruned.
CHARTER_TELEMETRY_BATCH_RETENTION_DAYS = env_int("CHARTER_TELEMETRY_BATCH_RETENTION_DAYS", 8)
# Predictions with an id wait this long for their label.
CHARTER_TELEMETRY_LABEL_HORIZON_DAYS = env_int("CHARTER_TELEMETRY_LABEL_HORIZON_DAYS", 30)
# Outgoing webhooks (portal/webhooks.py). Targets that resolve to private, loopback,
# link-local or reserved addresses are refused unless allowed here (checked when a
# subscription is saved and again before every delivery).
CHARTER_WEBHOOK_ALLOW_PRIVATE = env_bool("CHARTER_WEBHOOK_ALLOW_PRIVATE", False)
CHARTER_WEBHOOK_ALLOWED_HOSTS = env_list("CHARTER_WEBHOOK_ALLOWED_HOSTS")  # names or IPs/CIDRs
CHARTER_WEBHOOK_TIMEOUT_S = env_int("CHARTER_WEBHOOK_TIMEOUT_S", 10)
CHARTER_WEBHOOK_MAX_ATTEMPTS = env_int("CHARTER_WEBHOOK_MAX_ATTEMPTS", 6)
CHARTER_WEBHOOK_BACKOFF_S = env_int("CHARTER_WEBHOOK_BACKOFF_S", 30)  # doubled per attempt

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "portal.permissions.UseCaseScopeFilter",
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "portal.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "portal.api.schema.CharterAutoSchema",
    "EXCEPTION_HANDLER": "portal.api.exceptions.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": [
        "rest_framework.parsers.JSONParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "STRICT_JSON": True,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

SPECTACULAR_SETTINGS = {
    "TITLE": "Charter API",
    "DESCRIPTION": "AI governance and lineage portal: registry, approvals, lineage, audit.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "EvidenceKindEnum": "registry.models.Evidence.Kind",
        "SigningKeyKindEnum": "registry.models.SigningKey.Kind",
        "AttestationVerdictEnum": "registry.models.Attestation.Verdict",
        "DecisionVerdictEnum": "approvals.models.Decision.Verdict",
        "ModelVersionStatusEnum": "registry.models.ModelVersion.Status",
    },
}

# Celery: the embedded default is a file-system broker that needs no server;
# a real worker process still consumes it. Production uses Redis or RabbitMQ.
_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # A message a killed worker had taken is redelivered after this many seconds; it must
    # exceed the longest task (tasks are idempotent, so an early redelivery only costs time).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)
    }
CELERY_IMPORTS = ["lineage.reports.tasks"]  # not found by autodiscovery (a sub-package)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Celery beat: sign a checkpoint of the audit chain head every hour.
CELERY_BEAT_SCHEDULE = {
    "audit-checkpoint-hourly": {"task": "audits.tasks.make_checkpoint", "schedule": 3600.0},
    "approvals-expire-hourly": {"task": "approvals.tasks.expire_approvals", "schedule": 3600.0},
    "idempotency-purge-hourly": {"task": "portal.tasks.purge_idempotency", "schedule": 3600.0},
    "approvals-open-due-reviews-daily": {
        "task": "approvals.tasks.open_due_reviews",
        "schedule": 86400.0,
    },
    # Telemetry: evaluate closed windows (drift, alerts), fold batches whose task was lost,
    # prune folded batches and unlabelled predictions past their retention.
    "telemetry-evaluate-closed-windows": {
        "task": "workers.tasks.evaluate_closed_windows",
        "schedule": 300.0,
    },
    "telemetry-fold-stragglers": {"task": "workers.tasks.fold_stragglers", "schedule": 600.0},
    "telemetry-prune-daily": {"task": "workers.tasks.prune_telemetry", "schedule": 86400.0},
    "webhooks-requeue-stalled": {
        "task": "portal.tasks.requeue_stalled_webhooks",
        "schedule": 600.0,
    },
    # Retraining: re-queue polls of active jobs whose poll is overdue (a lost message).
    "retraining-poll-overdue": {"task": "workers.tasks.poll_overdue_jobs", "schedule": 60.0},
}

_MAIL_DEFAULT = "smtp" if PRODUCTION else "console"
MAILERS = {
    "default": {
        "BACKEND": env_str(
            "EMAIL_BACKEND", f"django.core.mail.backends.{_MAIL_DEFAULT}.EmailBackend"
        ),
        "OPTIONS": (
            {
                "host": env_str("EMAIL_HOST", "localhost"),
                "port": env_int("EMAIL_PORT", 25),
                "use_tls": env_bool("EMAIL_USE_TLS", False),
            }
            if _MAIL_DEFAULT == "smtp"
            else {}
        ),
    }
}
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "charter@localhost")

# Security posture. The hardened values are on whenever CHARTER_PRODUCTION is.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content Security Policy: scripts only from this origin (no inline scripts anywhere;
# chart data travels in <script type="application/json">, which is not executed).
# Inline styles stay allowed: plotly sets them on the elements it draws.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}
if env_bool("SECURE_PROXY_SSL", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Behind the proxy, the client's address is the last hop it appended (for lockouts).
    AXES_IPWARE_PROXY_COUNT = env_int("CHARTER_PROXY_COUNT", 1)
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
CSRF_COOKIE_HTTPONLY = True  # nothing in the UI reads it from JavaScript (htmx posts forms)
CSRF_COOKIE_SAMESITE = "Lax"
# Passwords: Argon2id first (new and re-hashed passwords); the others verify existing hashes
# and are upgraded to Argon2 at the user's next login.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
# Sessions end after SESSION_COOKIE_AGE from sign-in (absolute) or after this long without a
# request (idle); portal/security.py SessionExpiryMiddleware enforces both server-side.
CHARTER_SESSION_IDLE_SECONDS = env_int("CHARTER_SESSION_IDLE_SECONDS", 30 * 60)
# Last-activity stamps are written at most this often (a session write per request is waste).
CHARTER_SESSION_TOUCH_SECONDS = env_int("CHARTER_SESSION_TOUCH_SECONDS", 60)
# Login throttling (django-axes): this many failures from one client for one username lock that
# pair out for the cool-off, even with the right password; a success resets the count. Admins
# unlock early with `manage.py unlock_login USERNAME` (audited). Lockouts are audit events.
AXES_FAILURE_LIMIT = env_int("CHARTER_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("CHARTER_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False  # a lockout ends when its cool-off does
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_HTTP_RESPONSE_CODE = 403
AXES_ALLOWED_CORS_ORIGINS = CHARTER_BASE_URL  # axes' JSON lockout answer (XHR) is same-origin
AXES_ENABLE_ADMIN = False  # unlocking goes through the audited command, not admin deletes
AXES_VERBOSE = False
# Single sign-on (OpenID Connect, mozilla-django-oidc): on only when the OIDC_* variables are
# set; the login page then offers "Sign in with SSO". Passwords keep working for break-glass.
OIDC_RP_CLIENT_ID = env_str("OIDC_RP_CLIENT_ID")
OIDC_RP_CLIENT_SECRET = env_secret("OIDC_RP_CLIENT_SECRET") or ""
OIDC_OP_AUTHORIZATION_ENDPOINT = env_str("OIDC_OP_AUTHORIZATION_ENDPOINT")
OIDC_OP_TOKEN_ENDPOINT = env_str("OIDC_OP_TOKEN_ENDPOINT")
OIDC_OP_USER_ENDPOINT = env_str("OIDC_OP_USER_ENDPOINT")
OIDC_OP_JWKS_ENDPOINT = env_str("OIDC_OP_JWKS_ENDPOINT")
OIDC_RP_SIGN_ALGO = env_str("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env_str("OIDC_RP_SCOPES", "openid email profile")
OIDC_CREATE_USER = env_bool("OIDC_CREATE_USER", True)  # new users start with no role
OIDC_USE_PKCE = True
OIDC_AUTHENTICATION_CALLBACK_URL = "oidc-callback"
OIDC_TIMEOUT = env_int("OIDC_TIMEOUT_S", 10)
LOGIN_REDIRECT_URL_FAILURE = "/login/?sso=failed"
CHARTER_OIDC_ENABLED = _oidc_enabled(
    OIDC_RP_CLIENT_ID,
    OIDC_RP_CLIENT_SECRET,
    OIDC_OP_AUTHORIZATION_ENDPOINT,
    OIDC_OP_TOKEN_ENDPOINT,
    OIDC_OP_USER_ENDPOINT,
    *([OIDC_OP_JWKS_ENDPOINT] if OIDC_RP_SIGN_ALGO.startswith(("RS", "ES")) else []),
)
CHARTER_OIDC_LABEL = env_str("OIDC_LOGIN_LABEL", "Sign in with SSO")
if CHARTER_OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.append("portal.oidc.OIDCBackend")

# Operations (docs/operations.md): probes, Prometheus metrics, structured logs.
# Readiness checks each get this long (seconds) before they count as failed.
CHARTER_READINESS_TIMEOUT_S = float(env_str("CHARTER_READINESS_TIMEOUT_S", "2"))
# /metrics answers a bearer token (METRICS_TOKEN or METRICS_TOKEN_FILE), a staff user, or a
# direct (not proxied) request from these addresses or networks; everyone else gets 403.
METRICS_TOKEN = env_secret("METRICS_TOKEN") or ""
METRICS_ALLOWED_IPS = env_list("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"])
# Every process on a host (gunicorn workers, Celery workers) writes its counters here and
# /metrics adds them up (prometheus_client multiprocess mode).
PROMETHEUS_MULTIPROC_DIR = Path(
    env_str("PROMETHEUS_MULTIPROC_DIR", str(VAR_DIR / "prometheus"))
).resolve()

# Logs: one JSON object per line (LOG_FORMAT=json, the production default) or plain text;
# both carry the request id that the audit events of the same request carry.
LOG_FORMAT = env_str("LOG_FORMAT", "json" if PRODUCTION else "text")
if LOG_FORMAT not in ("json", "text"):
    raise ConfigError(f"LOG_FORMAT={LOG_FORMAT!r} must be json or text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "portal.logging.ContextFilter"}},
    "formatters": {
        "json": {"()": "portal.logging.JsonFormatter"},
        "text": {"()": "portal.logging.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # AccessLogMiddleware writes one line per request; Django's own server line would
        # double it.
        "django.server": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
