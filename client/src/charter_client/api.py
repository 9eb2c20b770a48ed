"""The HTTP client: typed methods for what a pipeline posts to Charter.

Standard library only (``urllib.request``); ``cryptography`` is needed for signing.

* **Auth**: ``Authorization: Bearer chtr_…`` (a service account's API token).
* **Retries**: 429, 502, 503 and 504 answers and connection errors (refused, reset,
  timed out) are retried with exponential backoff and full jitter, honouring
  ``Retry-After``; other errors raise at once.
* **Idempotency**: every write carries an ``Idempotency-Key`` header, generated once per
  logical call and sent again on each of its retries (or given by the caller). Charter
  answers a repeated key from the first request without writing again, so a write
  retried after a lost answer is not duplicated.
* **Errors**: :class:`~charter_client.errors.CharterError` subclasses by status, with the
  server's ``detail`` and field ``errors``.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import logging
import mimetypes
import os
import random
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from charter_client import signing
from charter_client.errors import (
    ApprovalTimeout,
    CharterError,
    ConnectionFailed,
    ServerError,
    error_for,
)

__all__ = [
    "FINAL_STATES",
    "Client",
    "ProfileUnavailable",
    "compute_reference_profile",
    "describe_file",
]

log = logging.getLogger("charter_client")
log.addHandler(logging.NullHandler())  # retries are logged as warnings: configure logging to see

VERSION = "0.1.0"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Approval request states after which nothing changes without a new request or round.
FINAL_STATES = frozenset(
    {"approved", "rejected", "changes_requested", "expired", "superseded", "withdrawn"}
)
DEFAULT_PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_CHUNK = 1 << 20
_MISSING: Any = object()

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------- local file facts


class _HashingReader(io.RawIOBase):
    """A raw reader that hashes and counts what passes through it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.digest.update(data)
        self.size += n
        return n


_NULLS = {"", "na", "n/a", "null", "none", "nan"}
_WIDER = {("integer", "number"): "number", ("number", "integer"): "number"}


def _kind(value: str) -> str:
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return "boolean"
    try:
        int(value)
        return "integer"
    except ValueError:
        pass
    try:
        float(value)
        return "number"
    except ValueError:
        return "string"


def describe_file(path: PathLike, *, tabular: bool | None = None) -> dict[str, Any]:
    """``sha256`` and ``size_bytes`` of a file, plus ``row_count`` and ``schema`` of a CSV.

    One streaming pass (memory stays flat). ``tabular`` defaults to "the name ends in
    .csv"; the column types are inferred by the same rules as Charter's summary worker
    (boolean, integer, number, string; empty / NA / null values are skipped). A CSV whose
    rows do not match its header raises ``ValueError``.
    """
    path = Path(path)
    if tabular is None:
        tabular = path.suffix.lower() == ".csv"
    if not tabular:
        sha, size = signing.sha256_file(path)
        return {"sha256": sha, "size_bytes": size}
    with open(path, "rb") as raw:
        hashing = _HashingReader(raw)
        text = io.TextIOWrapper(io.BufferedReader(hashing, _CHUNK), encoding="utf-8", newline="")
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: the file is empty")
        columns = [h.strip() for h in header]
        kinds: list[str | None] = [None] * len(columns)
        rows = 0
        for row in reader:
            if len(row) != len(columns):
                raise ValueError(
                    f"{path}: row {rows + 2} has {len(row)} fields; the header has {len(columns)}"
                )
            rows += 1
            for i, value in enumerate(row):
                if value.strip().lower() in _NULLS:
                    continue
                kind, before = _kind(value), kinds[i]
                kinds[i] = kind if before in (None, kind) else _WIDER.get((before, kind), "string")
        while hashing.read(_CHUNK):  # anything csv left unread still counts
            pass
    return {
        "sha256": hashing.digest.hexdigest(),
        "size_bytes": hashing.size,
        "row_count": rows,
        "schema": [
            {"name": c, "type": k or "unknown"} for c, k in zip(columns, kinds, strict=True)
        ],
    }


def _digest_and_size(path_or_digest: PathLike, size_bytes: int | None) -> tuple[str, int]:
    """A file's digest and size, or a given ``sha256`` hex digest with ``size_bytes``."""
    is_digest = isinstance(path_or_digest, str) and _HEX64.match(path_or_digest)
    if is_digest and not os.path.exists(path_or_digest):
        if size_bytes is None:
            raise ValueError("give size_bytes with a sha256 digest (or pass the file)")
        return str(path_or_digest).lower(), size_bytes
    sha, size = signing.sha256_file(path_or_digest)
    return sha, size if size_bytes is None else size_bytes


def _canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _plain(values: Any) -> Any:
    """numpy arrays / pandas series to lists; everything else as is."""
    tolist = getattr(values, "tolist", None)
    return tolist() if callable(tolist) else values


def _drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


# ---------------------------------------------------------------- reference profiles


class ProfileUnavailable(RuntimeError):
    """Charter's ``workers.drift`` package (numpy, pyarrow) is not importable here."""


def compute_reference_profile(
    path: PathLike, *, kinds: Mapping[str, str] | None = None, **options: Any
) -> dict[str, Any]:
    """A drift reference profile of a CSV or Parquet file, computed locally.

    Needs Charter's ``workers.drift`` (importable where Charter's source and numpy/pyarrow
    are); raises :class:`ProfileUnavailable` otherwise — then let the server profile the
    uploaded file (``Client.post_reference_profile(version_id, compute=True)``).
    ``options`` go to ``build_reference_profile`` (``bins``, ``max_values``, ``sample_size``,
    ``rng``).
    """
    try:
        from workers.drift.profile import (
            build_reference_profile,
            read_csv_columns,
            read_parquet_columns,
        )
    except ImportError as exc:
        raise ProfileUnavailable(
            "computing a reference profile locally needs Charter's workers.drift package "
            f"(numpy and pyarrow) on the Python path ({exc}); skipped — post "
            "{'compute': true} to /api/v1/dataset-versions/<id>/reference-profile/ to let the "
            "server profile the uploaded file instead"
        ) from exc
    path = Path(path)
    reader = read_parquet_columns if path.suffix.lower() == ".parquet" else read_csv_columns
    return build_reference_profile(reader(path), kinds, **options).to_dict()


# ---------------------------------------------------------------- HTTP plumbing


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects of reads to the same host only: the token never goes elsewhere."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if req.get_method() not in ("GET", "HEAD"):
            return None
        if urllib.parse.urlsplit(newurl).hostname != urllib.parse.urlsplit(req.full_url).hostname:
            return None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _quote_header(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _form_values(value: Any) -> list[str]:
    """How one field travels in a multipart form."""
    if value is None:
        return []
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, list | tuple) and all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    ):
        return [str(v) for v in value]  # a list of ids: one part each
    if isinstance(value, dict | list | tuple):
        return [json.dumps(value)]
    return [str(value)]


class _Multipart:
    """A multipart/form-data body streamed from disk, with its length known up front."""

    def __init__(self, fields: Mapping[str, Any], files: Mapping[str, PathLike]) -> None:
        self.boundary = f"charter-{uuid.uuid4().hex}"
        head = bytearray()
        for name, value in fields.items():
            for text in _form_values(value):
                head += (
                    f'--{self.boundary}\r\nContent-Disposition: form-data; name="'
                    f'{_quote_header(name)}"\r\n\r\n'
                ).encode()
                head += text.encode() + b"\r\n"
        self.head = bytes(head)
        self.files: list[tuple[bytes, Path]] = []
        length = len(self.head)
        for name, file in files.items():
            path = Path(file)
            media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            part = (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="'
                f'{_quote_header(name)}"; filename="{_quote_header(path.name)}"\r\n'
                f"Content-Type: {media}\r\n\r\n"
            ).encode()
            self.files.append((part, path))
            length += len(part) + path.stat().st_size + 2
        self.tail = f"--{self.boundary}--\r\n".encode()
        self.length = length + len(self.tail)
        self.content_type = f"multipart/form-data; boundary={self.boundary}"

    def chunks(self) -> Iterator[bytes]:
        yield self.head
        for part, path in self.files:
            yield part
            with open(path, "rb") as stream:
                yield from iter(lambda s=stream: s.read(_CHUNK), b"")
            yield b"\r\n"
        yield self.tail


def _parse_body(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: use our own backoff


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__


# ---------------------------------------------------------------- the client


class Client:
    """A Charter API client.

    ``base_url`` defaults to ``$CHARTER_URL`` (the portal's root, e.g.
    ``https://charter.example.org``; a trailing ``/api/v1`` is accepted), ``token`` to
    ``$CHARTER_TOKEN``. ``timeout`` is per network operation in seconds; ``retries`` how
    many times a retryable failure is tried again (so up to ``retries + 1`` attempts);
    ``backoff`` the first retry's delay ceiling, doubled per attempt up to ``max_backoff``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float = 30,
        retries: int = 5,
        *,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        user_agent: str | None = None,
    ) -> None:
        base_url = base_url or os.environ.get("CHARTER_URL", "")
        if not base_url:
            raise ValueError("no Charter URL: pass base_url or set CHARTER_URL")
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"Charter URL must be http(s)://host[:port][/prefix], got {base_url!r}"
            )
        prefix = parts.path.rstrip("/")
        if prefix.endswith("/api/v1"):
            prefix = prefix[: -len("/api/v1")]
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.prefix = prefix
        self.api_root = f"{self.origin}{prefix}/api/v1/"
        self.token = token if token is not None else os.environ.get("CHARTER_TOKEN") or None
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.user_agent = user_agent or (
            f"charter-client/{VERSION} python/{sys.version_info[0]}.{sys.version_info[1]}"
        )
        self._opener = urllib.request.build_opener(_SameHostRedirects())
        self._sleep: Callable[[float], None] = time.sleep

    def __repr__(self) -> str:
        return f"Client({self.api_root!r})"

    # -- plumbing

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        """An absolute URL on this portal for an API path (``"model-versions/"``), a path from
        the root (``"/api/v1/…"``) or a link the server returned (kept on this origin)."""
        if path.startswith(("http://", "https://")):
            parts = urllib.parse.urlsplit(path)
            url = self.origin + parts.path + (f"?{parts.query}" if parts.query else "")
        elif path.startswith("/"):
            url = self.origin + self.prefix + path
        else:
            url = self.api_root + path
        query = _drop_none(params or {})
        if query:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query, doseq=True)
        return url

    def _delay(self, attempt: int, headers: Any = None) -> float:
        hinted = _retry_after(headers)
        if hinted is not None:
            return min(hinted, self.max_backoff)
        ceiling = min(self.max_backoff, self.backoff * (2**attempt))
        return random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = _MISSING,
        params: Mapping[str, Any] | None = None,
        multipart: _Multipart | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send one logical request (retried as described above); the parsed response body."""
        method = method.upper()
        url = self.url(path, params)
        hdrs = {"Accept": "application/json", "User-Agent": self.user_agent}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        if method not in ("GET", "HEAD", "OPTIONS"):
            hdrs["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        data: bytes | None = None
        if json_body is not _MISSING:
            data = json.dumps(json_body).encode()
            hdrs["Content-Type"] = "application/json"
        elif multipart is not None:
            hdrs["Content-Type"] = multipart.content_type
            hdrs["Content-Length"] = str(multipart.length)
        hdrs.update(headers or {})
        attempt = 0
        while True:
            body: Any = multipart.chunks() if multipart is not None else data
            req = urllib.request.Request(url, data=body, method=method, headers=hdrs)  # noqa: S310
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    raw = resp.read()
                    return _parse_body(raw, resp.headers.get("Content-Type", ""))
            except urllib.error.HTTPError as exc:
                status, answer_headers = exc.code, exc.headers
                try:
                    raw = exc.read()
                except (OSError, ValueError, AttributeError, http.client.HTTPException):
                    raw = b""
                finally:
                    exc.close()
                if status in RETRY_STATUSES and attempt < self.retries:
                    delay = self._delay(attempt, answer_headers)
                    attempt += 1
                    log.warning(
                        "%s %s: HTTP %s; retry %d of %d in %.2fs",
                        method,
                        url,
                        status,
                        attempt,
                        self.retries,
                        delay,
                    )
                    self._sleep(delay)
                    continue
                content_type = answer_headers.get("Content-Type", "") if answer_headers else ""
                raise error_for(
                    status,
                    _parse_body(raw, content_type),
                    method=method,
                    url=url,
                    request_id=(answer_headers.get("X-Request-ID", "") if answer_headers else ""),
                ) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, ssl.SSLCertVerificationError | ValueError):
                    raise ConnectionFailed(
                        f"cannot reach {self.origin}: {_describe(exc)}", method=method, url=url
                    ) from exc
                if attempt < self.retries:
                    delay = self._delay(attempt)
                    attempt += 1
                    log.warning(
                        "%s %s: %s; retry %d of %d in %.2fs",
                        method,
                        url,
                        _describe(exc),
                        attempt,
                        self.retries,
                        delay,
                    )
                    self._sleep(delay)
                    continue
                raise ConnectionFailed(
                    f"cannot reach {self.origin} after {attempt + 1} attempts: {_describe(exc)}",
                    method=method,
                    url=url,
                ) from exc

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """GET one resource (an API path, e.g. ``"model-versions/12/"``)."""
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        """POST a JSON body to an API path."""
        return self.request(
            "POST", path, json_body={} if body is None else body, idempotency_key=idempotency_key
        )

    def patch(self, path: str, body: Mapping[str, Any]) -> Any:
        return self.request("PATCH", path, json_body=dict(body))

    def post_files(
        self,
        path: str,
        fields: Mapping[str, Any],
        files: Mapping[str, PathLike],
        *,
        idempotency_key: str | None = None,
    ) -> Any:
        """POST a multipart form, streaming the files from disk (never whole in memory)."""
        return self.request(
            "POST",
            path,
            multipart=_Multipart(_drop_none(fields), files),
            idempotency_key=idempotency_key,
        )

    # -- registry

    def register_dataset_version(
        self,
        dataset: int,
        version: str,
        path: PathLike | None = None,
        *,
        upload: bool = True,
        describe: bool = True,
        idempotency_key: str | None = None,
        **datasheet: Any,
    ) -> dict[str, Any]:
        """Register a dataset version with its datasheet (``motivation``, ``composition``, …,
        ``license``, ``sensitivity``, ``uri``, ``derived_from=[ids]``).

        With ``path``, the SHA-256, size and — for a CSV — row count and schema are computed
        locally and sent; the file itself is uploaded (streamed as multipart) unless
        ``upload=False`` (then give ``uri=`` where it lives). Charter's worker recomputes the
        summary from an uploaded file.
        """
        fields: dict[str, Any] = {"dataset": dataset, "version": version, **datasheet}
        if path is not None and describe:
            for key, value in describe_file(path).items():
                fields.setdefault(key, value)
        if path is None or not upload:
            return self.post(
                "dataset-versions/", _drop_none(fields), idempotency_key=idempotency_key
            )
        return self.post_files(
            "dataset-versions/", fields, {"file": path}, idempotency_key=idempotency_key
        )

    def register_model_version(
        self,
        model: int,
        version: str,
        *,
        metrics: Mapping[str, Any] | None = None,
        subgroup_metrics: Mapping[str, Any] | None = None,
        training_datasets: Iterable[int] | None = None,
        validation_datasets: Iterable[int] | None = None,
        test_datasets: Iterable[int] | None = None,
        code_repository: str | None = None,
        code_commit: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        environment: Mapping[str, Any] | None = None,
        parent: int | None = None,
        idempotency_key: str | None = None,
        **card: Any,
    ) -> dict[str, Any]:
        """Register a model version with its model card (``intended_use``,
        ``out_of_scope_uses``, ``limitations``, ``ethical_considerations``), metrics and
        data links in one call."""
        body = _drop_none(
            {
                "model": model,
                "version": version,
                "metrics": dict(metrics) if metrics is not None else None,
                "subgroup_metrics": dict(subgroup_metrics)
                if subgroup_metrics is not None
                else None,
                "training_datasets": _ids(training_datasets),
                "validation_datasets": _ids(validation_datasets),
                "test_datasets": _ids(test_datasets),
                "code_repository": code_repository,
                "code_commit": code_commit,
                "parameters": dict(parameters) if parameters is not None else None,
                "environment": dict(environment) if environment is not None else None,
                "parent": parent,
                **card,
            }
        )
        return self.post("model-versions/", body, idempotency_key=idempotency_key)

    def _envelope(
        self,
        name: str,
        sha256: str,
        key: signing.KeyLike,
        predicate_type: str,
        predicate: Mapping[str, Any] | None,
        default: Mapping[str, Any],
    ) -> dict[str, Any]:
        return signing.sign_statement(
            [(name, sha256)],
            predicate_type,
            predicate if predicate is not None else _default_predicate(default),
            key,
        )

    def upload_artifact(
        self,
        model_version: int,
        path_or_digest: PathLike,
        name: str | None = None,
        uri: str = "",
        key: signing.KeyLike | None = None,
        *,
        size_bytes: int | None = None,
        media_type: str | None = None,
        predicate_type: str = DEFAULT_PREDICATE_TYPE,
        predicate: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Register an artifact of a model version by its SHA-256 (of the file at
        ``path_or_digest``, or the hex digest itself with ``size_bytes``).

        The artifact itself stays where ``uri`` says. With ``key`` (an Ed25519 private key,
        its PEM or a PEM file), an in-toto Statement v1 over ``(name, sha256)`` is signed in
        a DSSE envelope and sent with it; Charter verifies it on receipt and refuses both on a
        bad signature. Register the public key first (:meth:`register_signing_key`).
        """
        sha, size = _digest_and_size(path_or_digest, size_bytes)
        if name is None:
            if _HEX64.match(str(path_or_digest)):
                raise ValueError("name the artifact")
            name = Path(path_or_digest).name
        body = _drop_none(
            {
                "model_version": model_version,
                "name": name,
                "uri": uri,
                "sha256": sha,
                "size_bytes": size,
                "media_type": media_type,
            }
        )
        if key is not None:
            body["envelope"] = self._envelope(
                name,
                sha,
                key,
                predicate_type,
                predicate,
                {"kind": "artifact", "name": name, "uri": uri, "model_version": model_version},
            )
        return self.post("artifacts/", body, idempotency_key=idempotency_key)

    def attach_attestation(
        self, artifact: int, envelope: Mapping[str, Any], *, evidence: bool = False
    ) -> dict[str, Any]:
        """Attach a signed envelope to an existing artifact (or evidence item)."""
        kind = "evidence" if evidence else "artifacts"
        return self.post(f"{kind}/{artifact}/attestations/", {"envelope": dict(envelope)})

    def add_evidence(
        self,
        kind: str,
        title: str,
        path_or_digest: PathLike | None = None,
        *,
        model_version: int | None = None,
        use_case: int | None = None,
        summary: str | None = None,
        uri: str | None = None,
        data: Any = None,
        size_bytes: int | None = None,
        media_type: str | None = None,
        key: signing.KeyLike | None = None,
        predicate_type: str = DEFAULT_PREDICATE_TYPE,
        predicate: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Add evidence (``kind``: validation_report, bias_evaluation, security_scan,
        test_results, red_team, impact_assessment, other) to a model version or use case.

        Its SHA-256 is the file's at ``path_or_digest`` (or that hex digest); without one,
        the SHA-256 of ``data`` as canonical JSON. Signed like an artifact when ``key`` is
        given.
        """
        if path_or_digest is not None:
            sha, size = _digest_and_size(path_or_digest, size_bytes)
            size_or_none: int | None = size
        elif data is not None:
            sha, size_or_none = hashlib.sha256(_canonical_json(data)).hexdigest(), size_bytes
        else:
            raise ValueError("give the evidence file (or its sha256), or its data")
        body = _drop_none(
            {
                "kind": kind,
                "title": title,
                "model_version": model_version,
                "use_case": use_case,
                "summary": summary,
                "uri": uri,
                "sha256": sha,
                "size_bytes": size_or_none,
                "media_type": media_type,
                "data": data,
            }
        )
        if key is not None:
            body["envelope"] = self._envelope(
                title,
                sha,
                key,
                predicate_type,
                predicate,
                {"kind": "evidence", "evidence_kind": kind, "title": title},
            )
        return self.post("evidence/", body, idempotency_key=idempotency_key)

    def record_deployment(
        self,
        model_version: int,
        environment: str,
        *,
        region: str | None = None,
        strategy: str | None = None,
        traffic_share: float | None = None,
        endpoint: str | None = None,
        replaces: int | None = None,
        notes: str | None = None,
        released_at: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Record a deployment. Gated environments (production by default) need an approved
        request and verified signatures: otherwise 409 :class:`Conflict` with the reasons."""
        body = _drop_none(
            {
                "model_version": model_version,
                "environment": environment,
                "region": region,
                "strategy": strategy,
                "traffic_share": traffic_share,
                "endpoint": endpoint,
                "replaces": replaces,
                "notes": notes,
                "released_at": released_at,
            }
        )
        return self.post("deployments/", body, idempotency_key=idempotency_key)

    # -- signing keys

    def register_signing_key(
        self, pem: signing.PublicKeyLike, name: str = "", *, kind: str = "pipeline"
    ) -> dict[str, Any]:
        """Register a public key (give the public or the private key, PEM or a path: only
        the public half is sent). ``kind``: ``pipeline`` or ``person``."""
        body = {"public_key_pem": signing.public_pem(pem), "name": name, "kind": kind}
        return self.post("signing-keys/", body)

    def portal_key(self) -> dict[str, Any]:
        """The portal's public signing key (``key_id``, ``public_key_pem``, ``previous``)."""
        return self.get("portal-key/")

    # -- approvals

    def request_approval(
        self,
        model_version: int,
        environment: str = "production",
        *,
        summary: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Request approval of a model version for an environment (submitted at once)."""
        body = _drop_none(
            {"model_version": model_version, "environment": environment, "summary": summary}
        )
        return self.post("approval-requests/", body, idempotency_key=idempotency_key)

    def get_approval(self, request_id: int) -> dict[str, Any]:
        return self.get(f"approval-requests/{int(request_id)}/")

    def decide(
        self, request_id: int, verdict: str, comment: str, *, role: str | None = None
    ) -> dict[str, Any]:
        """A reviewer's decision: ``approve``, ``reject`` or ``request_changes``."""
        body = _drop_none({"verdict": verdict, "comment": comment, "role": role})
        return self.post(f"approval-requests/{int(request_id)}/decide/", body)

    def resubmit_approval(self, request_id: int) -> dict[str, Any]:
        return self.post(f"approval-requests/{int(request_id)}/submit/")

    def withdraw_approval(self, request_id: int, reason: str = "") -> dict[str, Any]:
        return self.post(f"approval-requests/{int(request_id)}/withdraw/", {"reason": reason})

    def wait_for_approval(
        self,
        request_id: int,
        timeout: float = 3600,
        poll: float = 15,
        *,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the request reaches a final state (:data:`FINAL_STATES`: approved,
        rejected, changes_requested, expired, superseded, withdrawn) and return it.

        Raises :class:`~charter_client.errors.ApprovalTimeout` (with the last state seen)
        after ``timeout`` seconds. Outages while waiting (Charter unreachable, or 5xx after
        the retries) are logged and polled through until the deadline; refusals (e.g. 404)
        raise at once. ``on_poll`` sees each state read.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        last: dict[str, Any] = {}
        while True:
            try:
                req: dict[str, Any] | None = self.get_approval(request_id)
            except (ConnectionFailed, ServerError) as exc:
                # an outage while waiting hours for a board is no reason to give up early
                if time.monotonic() >= deadline:
                    raise
                log.warning("approval request %s: %s; still waiting", request_id, exc.detail)
                req = None
            if req is not None:
                last = req
                if on_poll is not None:
                    on_poll(req)
                if req.get("state") in FINAL_STATES:
                    return req
            left = deadline - time.monotonic()
            if left <= 0:
                raise ApprovalTimeout(
                    f"approval request {request_id} is still {last.get('state', 'unknown')} "
                    f"after {timeout:g}s",
                    request=last,
                )
            self._sleep(min(max(poll, 0.05), left))

    # -- telemetry and lineage (the monitoring and lineage endpoints)

    def post_telemetry(
        self,
        deployment: int,
        features: Mapping[str, Any],
        predictions: Any = None,
        *,
        prediction_ids: Any = None,
        latency_ms: Any = None,
        errors: int | None = None,
        timestamp: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Post a batch of served rows as columns (``{feature: [values]}``, numpy arrays
        welcome). A retried batch with the same key is answered with the original response."""
        key = idempotency_key or uuid.uuid4().hex
        body = _drop_none(
            {
                "idempotency_key": key,
                "features": {name: _plain(values) for name, values in features.items()},
                "predictions": _plain(predictions),
                "prediction_ids": _plain(prediction_ids),
                "latency_ms": _plain(latency_ms),
                "errors": errors,
                "timestamp": timestamp,
            }
        )
        return self.post(f"deployments/{int(deployment)}/telemetry/", body, idempotency_key=key)

    def post_telemetry_file(
        self,
        deployment: int,
        path: PathLike,
        *,
        timestamp: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Post a telemetry batch as a CSV or Parquet file (streamed)."""
        key = idempotency_key or uuid.uuid4().hex
        return self.post_files(
            f"deployments/{int(deployment)}/telemetry/",
            {"idempotency_key": key, "timestamp": timestamp},
            {"file": path},
            idempotency_key=key,
        )

    def post_window_profile(
        self,
        deployment: int,
        profile: Any,
        *,
        predictions: Any = None,
        service: Any = None,
        timestamp: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Post a window profile folded client-side on the reference's bins (a dict, or a
        ``workers.drift`` ``DatasetProfile``)."""
        key = idempotency_key or uuid.uuid4().hex
        body = _drop_none(
            {
                "idempotency_key": key,
                "profile": _as_dict(profile),
                "predictions": _as_dict(predictions) if predictions is not None else None,
                "service": _as_dict(service) if service is not None else None,
                "timestamp": timestamp,
            }
        )
        return self.post(f"deployments/{int(deployment)}/profiles/", body, idempotency_key=key)

    def post_labels(
        self,
        deployment: int,
        prediction_ids: Any,
        labels: Any,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Post ground-truth labels that arrived later, joined by prediction id."""
        key = idempotency_key or uuid.uuid4().hex
        body = {
            "idempotency_key": key,
            "prediction_ids": _plain(prediction_ids),
            "labels": _plain(labels),
        }
        return self.post(f"deployments/{int(deployment)}/labels/", body, idempotency_key=key)

    def post_reference_profile(
        self,
        dataset_version: int,
        profile: Any = None,
        *,
        compute: bool = False,
        prediction_column: str = "",
        label_column: str = "",
    ) -> dict[str, Any]:
        """Set a dataset version's drift reference profile: one computed locally
        (:func:`compute_reference_profile`), or ``compute=True`` to have the server profile
        the uploaded file."""
        body: dict[str, Any] = {
            "prediction_column": prediction_column,
            "label_column": label_column,
        }
        if compute:
            body["compute"] = True
        else:
            body["profile"] = _as_dict(profile)
        return self.post(f"dataset-versions/{int(dataset_version)}/reference-profile/", body)

    # -- retraining jobs (the job's side: CHARTER_URL, CHARTER_TOKEN and CHARTER_JOB are set)

    def retraining_job(self, job_id: int) -> dict[str, Any]:
        return self.get(f"retraining-jobs/{int(job_id)}/")

    def post_job_progress(self, job_id: int, progress: float, message: str = "") -> dict[str, Any]:
        """Report a retraining job's progress (0..1); only the job's own token may."""
        body = {"progress": max(0.0, min(1.0, float(progress))), "message": message[:500]}
        return self.post(f"retraining-jobs/{int(job_id)}/progress/", body)

    def post_job_result(
        self, job_id: int, model_version: int, summary: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Hand the model version a retraining job produced to Charter, which checks it and
        opens its approval request; only the job's own token may."""
        body = {"model_version": int(model_version), "summary": dict(summary or {})}
        return self.post(f"retraining-jobs/{int(job_id)}/result/", body)

    def download(self, path: str, dest: PathLike, *, chunk: int = 1 << 20) -> Path:
        """Stream a file the portal serves (e.g. a job's dataset) to ``dest``; retried on
        refused connections and 5xx like every call."""
        target = Path(dest)
        hdrs = {"User-Agent": self.user_agent, "Accept": "*/*"}
        if self.token:
            hdrs["Authorization"] = f"Bearer {self.token}"
        url = self.url(path)
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(url, headers=hdrs)  # noqa: S310
            try:
                with self._opener.open(req, timeout=self.timeout) as resp:
                    tmp = target.with_name(f".{target.name}.part")
                    with open(tmp, "wb") as fh:
                        while block := resp.read(chunk):
                            fh.write(block)
                    os.replace(tmp, target)
                    return target
            except urllib.error.HTTPError as exc:
                raw = exc.read()
                exc.close()
                if exc.code in RETRY_STATUSES and attempt < self.retries:
                    self._sleep(self._delay(attempt, exc.headers))
                    continue
                raise error_for(
                    exc.code,
                    _parse_body(raw, exc.headers.get("Content-Type", "")),
                    method="GET",
                    url=url,
                ) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                if attempt < self.retries:
                    self._sleep(self._delay(attempt))
                    continue
                raise ConnectionFailed(
                    f"cannot reach {self.origin}: {_describe(exc)}", method="GET", url=url
                ) from exc
        raise ConnectionFailed(f"cannot reach {self.origin}", method="GET", url=url)

    def emit_lineage(self, event: Any, *, idempotency_key: str | None = None) -> Any:
        """Record one OpenLineage event (a dict, or an ``openlineage-python`` event object)."""
        return self.request(
            "POST", "lineage", json_body=_lineage_dict(event), idempotency_key=idempotency_key
        )

    def emit_lineage_batch(self, events: Iterable[Any]) -> Any:
        """Record several OpenLineage events in one transaction."""
        return self.request("POST", "lineage/batch", json_body=[_lineage_dict(e) for e in events])

    # -- listing (last: the method name shadows the builtin in the class body)

    def list(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        page_size: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a list endpoint, following the ``next`` links page by page."""
        query: dict[str, Any] | None = dict(params or {})
        if page_size is not None and query is not None:
            query["page_size"] = page_size
        url: str | None = path
        while url:
            page = self.get(url, query)
            query = None  # the next link carries the query
            if isinstance(page, list):
                yield from page
                return
            if not isinstance(page, dict):
                raise CharterError(f"{path} did not answer with a list page")
            yield from page.get("results") or []
            url = page.get("next")


def _ids(values: Iterable[int] | None) -> list[int] | None:
    return None if values is None else [int(v) for v in values]


def _as_dict(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value


def _lineage_dict(event: Any) -> Any:
    if isinstance(event, Mapping | list):
        return event
    try:  # openlineage-python's attrs classes
        from openlineage.client.serde import Serde
    except ImportError as exc:
        raise TypeError("pass the OpenLineage event as a dict") from exc
    return json.loads(Serde.to_json(event))


def _default_predicate(subject: Mapping[str, Any]) -> dict[str, Any]:
    """A minimal SLSA provenance v1 predicate naming this client and the CI run, if any."""
    run = next(
        (
            os.environ[name]
            for name in ("CHARTER_RUN_ID", "GITHUB_RUN_ID", "CI_JOB_ID", "BUILD_ID")
            if os.environ.get(name)
        ),
        "",
    )
    return {
        "buildDefinition": {
            "buildType": "urn:charter-client:register:v1",
            "externalParameters": dict(subject),
        },
        "runDetails": {
            "builder": {"id": os.environ.get("CHARTER_BUILDER_ID") or "urn:charter-client"},
            "metadata": {"invocationId": run} if run else {},
        },
    }
