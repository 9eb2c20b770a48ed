"""``charter``: the command line over :class:`charter_client.Client`, for CI pipelines.

Configuration comes from ``$CHARTER_URL`` and ``$CHARTER_TOKEN`` (or ``--url`` and
``--token-file``). ``--json`` prints the server's answer as JSON on stdout (errors as
``{"error": {...}}``); otherwise one line per result. Exit codes:

* 0 — done (``approval wait``: approved)
* 1 — Charter refused the request (the server's field errors are printed on stderr)
* 2 — ``approval wait``/``request --wait``: rejected, changes requested, expired,
  superseded or withdrawn
* 3 — ``approval wait``: timed out before a decision
* 4 — Charter could not be reached, or a local problem (a file, a key, configuration)
* 64 — bad command-line usage
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from charter_client import api, signing
from charter_client.errors import ApprovalTimeout, CharterError, ConnectionFailed

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_NOT_APPROVED = 2
EXIT_TIMEOUT = 3
EXIT_LOCAL = 4
EXIT_USAGE = 64

_DURATION = re.compile(
    r"^(?:(?P<d>\d+(?:\.\d+)?)d)?(?:(?P<h>\d+(?:\.\d+)?)h)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?$"
)


class LocalError(Exception):
    """A problem on this side: a missing file, a bad key, no configuration."""


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``1h``, ``1h30m`` or ``2d``."""
    value = text.strip().lower()
    try:
        return float(value)
    except ValueError:
        pass
    match = _DURATION.match(value)
    if not value or match is None:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 15m, 1h30m)")
    factors = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    return sum(float(match[k]) * f for k, f in factors.items() if match[k])


def _json_arg(text: str) -> Any:
    """A JSON value given inline, or ``@path`` to a JSON file (``@-``: stdin)."""
    try:
        if text.startswith("@"):
            source = sys.stdin.read() if text == "@-" else Path(text[1:]).read_text()
            return json.loads(source)
        return json.loads(text)
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text[1:]}: {exc.strerror}") from exc
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc


def _field_arg(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE, got {text!r}")
    return name.strip(), value


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 64 (EX_USAGE), so they never read as 'rejected' (2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# ---------------------------------------------------------------- output


def _short(sha: Any) -> str:
    return f"{str(sha)[:12]}…" if sha else "-"


def _emit(args: argparse.Namespace, data: Any, line: str) -> None:
    if args.json:
        json.dump(data, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    else:
        print(line)


def _progress(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)


# ---------------------------------------------------------------- commands


def _client(args: argparse.Namespace) -> api.Client:
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            raise LocalError(f"cannot read the token file: {exc}") from exc
    token = token or os.environ.get("CHARTER_TOKEN")
    if not token:
        raise LocalError("no API token: set CHARTER_TOKEN or pass --token-file")
    try:
        return api.Client(args.url, token, timeout=args.timeout, retries=args.retries)
    except ValueError as exc:
        raise LocalError(str(exc)) from exc


def _fields(pairs: Sequence[tuple[str, str]] | None) -> dict[str, str]:
    return dict(pairs or [])


def cmd_dataset_register(args: argparse.Namespace) -> int:
    datasheet: dict[str, Any] = _fields(args.set)
    for name in ("uri", "license", "sensitivity"):
        if getattr(args, name) is not None:
            datasheet[name] = getattr(args, name)
    if args.derived_from:
        datasheet["derived_from"] = args.derived_from
    if args.file is not None and not Path(args.file).is_file():
        raise LocalError(f"no such file: {args.file}")
    result = _client(args).register_dataset_version(
        args.dataset, args.version, args.file, upload=not args.no_upload, **datasheet
    )
    _emit(
        args,
        result,
        f"dataset version {result.get('id')} registered: {result.get('display', args.version)} "
        f"(sha256 {_short(result.get('sha256'))}, rows {result.get('row_count')})",
    )
    return EXIT_OK


def cmd_model_register(args: argparse.Namespace) -> int:
    card = _fields(args.set)
    for name in ("intended_use", "out_of_scope_uses", "limitations", "ethical_considerations"):
        if getattr(args, name) is not None:
            card[name] = getattr(args, name)
    result = _client(args).register_model_version(
        args.model,
        args.version,
        metrics=args.metrics,
        subgroup_metrics=args.subgroup_metrics,
        training_datasets=args.training_dataset,
        validation_datasets=args.validation_dataset,
        test_datasets=args.test_dataset,
        code_repository=args.code_repository,
        code_commit=args.code_commit,
        parameters=args.parameters,
        parent=args.parent,
        **card,
    )
    _emit(
        args,
        result,
        f"model version {result.get('id')} registered: {result.get('display', args.version)}",
    )
    return EXIT_OK


def _key(path: str | None) -> Any:
    if path is None:
        return None
    try:
        return signing.load_private_key(Path(path))
    except (OSError, ValueError, TypeError) as exc:
        raise LocalError(f"cannot load the signing key {path}: {exc}") from exc


def _target(file: str | None, sha256: str | None) -> str:
    if file is not None:
        if not Path(file).is_file():
            raise LocalError(f"no such file: {file}")
        return file
    if sha256 is None:
        raise LocalError("give the file, or --sha256 (with --size)")
    return sha256


def cmd_artifact_upload(args: argparse.Namespace) -> int:
    target = _target(args.file, args.sha256)
    key = _key(args.sign_key)
    result = _client(args).upload_artifact(
        args.model_version,
        target,
        args.name,
        args.uri,
        key,
        size_bytes=args.size,
        media_type=args.media_type,
        predicate_type=args.predicate_type,
        predicate=args.predicate,
    )
    _emit(
        args,
        result,
        f"artifact {result.get('id')} registered: {result.get('name')} "
        f"(sha256 {_short(result.get('sha256'))}, signature {result.get('signature_status')})",
    )
    return EXIT_OK


def cmd_evidence_add(args: argparse.Namespace) -> int:
    target = None if args.file is None and args.sha256 is None else _target(args.file, args.sha256)
    if target is None and args.data is None:
        raise LocalError("give the evidence file, --sha256, or --data")
    result = _client(args).add_evidence(
        args.kind,
        args.title,
        target,
        model_version=args.model_version,
        use_case=args.use_case,
        summary=args.summary,
        uri=args.uri,
        data=args.data,
        size_bytes=args.size,
        media_type=args.media_type,
        key=_key(args.sign_key),
        predicate_type=args.predicate_type,
        predicate=args.predicate,
    )
    _emit(
        args,
        result,
        f"evidence {result.get('id')} added: {result.get('kind')} {result.get('title')!r} "
        f"(signature {result.get('signature_status')})",
    )
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    result = _client(args).record_deployment(
        args.model_version,
        args.environment,
        region=args.region,
        strategy=args.strategy,
        traffic_share=args.traffic_share,
        endpoint=args.endpoint,
        replaces=args.replaces,
        notes=args.notes,
    )
    _emit(
        args,
        result,
        f"deployment {result.get('id')} recorded: model version {result.get('model_version')} "
        f"to {result.get('environment')} ({result.get('status')})",
    )
    return EXIT_OK


def _read_json_file(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        return json.loads(text)
    except OSError as exc:
        raise LocalError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise LocalError(f"{path} is not valid JSON: {exc}") from exc


def cmd_telemetry_post(args: argparse.Namespace) -> int:
    client = _client(args)
    suffix = Path(args.file).suffix.lower()
    if suffix in (".csv", ".parquet"):
        if not Path(args.file).is_file():
            raise LocalError(f"no such file: {args.file}")
        result = client.post_telemetry_file(
            args.deployment, args.file, idempotency_key=args.idempotency_key
        )
    else:
        body = _read_json_file(args.file)
        if not isinstance(body, dict) or not isinstance(body.get("features"), dict):
            raise LocalError(f'{args.file}: expected {{"features": {{name: [values]}}, ...}}')
        result = client.post_telemetry(
            args.deployment,
            body["features"],
            body.get("predictions"),
            prediction_ids=body.get("prediction_ids"),
            latency_ms=body.get("latency_ms"),
            errors=body.get("errors"),
            timestamp=body.get("timestamp"),
            idempotency_key=args.idempotency_key or body.get("idempotency_key"),
        )
    _emit(args, result, f"telemetry batch {result.get('id', '')} {result.get('status', 'sent')}")
    return EXIT_OK


def cmd_telemetry_profile(args: argparse.Namespace) -> int:
    body = _read_json_file(args.file)
    profile = body.get("profile", body) if isinstance(body, dict) else body
    result = _client(args).post_window_profile(
        args.deployment,
        profile,
        predictions=body.get("predictions") if isinstance(body, dict) else None,
        service=body.get("service") if isinstance(body, dict) else None,
        idempotency_key=args.idempotency_key,
    )
    _emit(args, result, f"window profile {result.get('id', '')} {result.get('status', 'sent')}")
    return EXIT_OK


def cmd_lineage_emit(args: argparse.Namespace) -> int:
    event = _read_json_file(args.file)
    client = _client(args)
    if isinstance(event, list):
        result = client.emit_lineage_batch(event)
        line = f"{len(event)} lineage events sent"
    else:
        result = client.emit_lineage(event)
        line = f"lineage event sent ({event.get('eventType', 'event')})"
    _emit(args, result, line)
    return EXIT_OK


def _state_line(req: dict[str, Any]) -> str:
    line = f"approval request {req.get('id')}: {req.get('state')}"
    if req.get("blocking"):
        line += f" (waiting for: {'; '.join(req['blocking'])})"
    if req.get("closed_reason"):
        line += f" ({req['closed_reason']})"
    return line


def _wait(args: argparse.Namespace, client: api.Client, request_id: int) -> int:
    seen: list[str] = []

    def on_poll(req: dict[str, Any]) -> None:
        line = _state_line(req)
        if not seen or seen[-1] != line:
            seen.append(line)
            _progress(args, line)

    try:
        req = client.wait_for_approval(request_id, args.timeout_wait, args.poll, on_poll=on_poll)
    except ApprovalTimeout as exc:
        if args.json:
            _emit(args, {"timeout": True, "request": exc.request}, "")
        print(f"charter: {exc.detail}", file=sys.stderr)
        return EXIT_TIMEOUT
    _emit(args, req, _state_line(req))
    return EXIT_OK if req.get("state") == "approved" else EXIT_NOT_APPROVED


def cmd_approval_request(args: argparse.Namespace) -> int:
    client = _client(args)
    req = client.request_approval(args.model_version, args.environment, summary=args.summary)
    if args.wait:
        _progress(args, f"approval request {req.get('id')} submitted; waiting")
        return _wait(args, client, int(req["id"]))
    _emit(args, req, _state_line(req))
    return EXIT_OK


def cmd_approval_wait(args: argparse.Namespace) -> int:
    return _wait(args, _client(args), args.request)


def cmd_approval_get(args: argparse.Namespace) -> int:
    req = _client(args).get_approval(args.request)
    _emit(args, req, _state_line(req))
    return EXIT_OK


def cmd_key_generate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    public_out = Path(args.public_out) if args.public_out else out.with_suffix(".pub.pem")
    for path in (out, public_out):
        if path.exists() and not args.force:
            raise LocalError(f"{path} exists (use --force to overwrite)")
    private_pem, public_pem = signing.generate_key()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(private_pem)
        os.chmod(out, 0o600)
        public_out.write_bytes(public_pem)
    except OSError as exc:
        raise LocalError(f"cannot write the key: {exc}") from exc
    kid = signing.key_id(public_pem)
    data = {"private_key": str(out), "public_key": str(public_out), "key_id": kid}
    _emit(args, data, f"key {kid} written to {out} (public key: {public_out})")
    return EXIT_OK


def cmd_key_id(args: argparse.Namespace) -> int:
    try:
        kid = signing.key_id(Path(args.file))
    except (OSError, ValueError, TypeError) as exc:
        raise LocalError(f"cannot load {args.file}: {exc}") from exc
    _emit(args, {"key_id": kid}, kid)
    return EXIT_OK


def cmd_key_register(args: argparse.Namespace) -> int:
    try:
        pem = signing.public_pem(Path(args.file))
    except (OSError, ValueError, TypeError) as exc:
        raise LocalError(f"cannot load {args.file}: {exc}") from exc
    result = _client(args).register_signing_key(pem, args.name, kind=args.kind)
    _emit(args, result, f"signing key {result.get('key_id')} registered (id {result.get('id')})")
    return EXIT_OK


def cmd_profile_reference(args: argparse.Namespace) -> int:
    try:
        profile = api.compute_reference_profile(args.file)
    except api.ProfileUnavailable as exc:
        raise LocalError(str(exc)) from exc
    except (OSError, ValueError) as exc:
        raise LocalError(f"cannot profile {args.file}: {exc}") from exc
    if args.out:
        Path(args.out).write_text(json.dumps(profile))
    if args.dataset_version is not None:
        result = _client(args).post_reference_profile(
            args.dataset_version,
            profile,
            prediction_column=args.prediction_column,
            label_column=args.label_column,
        )
        _emit(args, result, f"reference profile set on dataset version {args.dataset_version}")
    elif not args.out:
        _emit(args, profile, json.dumps(profile))
    else:
        _emit(
            args, {"out": args.out, "rows": profile.get("rows")}, f"profile written to {args.out}"
        )
    return EXIT_OK


# ---------------------------------------------------------------- parser


def _common() -> argparse.ArgumentParser:
    """Options every command takes, before or after the command words."""
    p = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    p.add_argument("--url", default=s, help="Charter's URL (default: $CHARTER_URL)")
    p.add_argument(
        "--token-file", default=s, help="file holding the API token (default: $CHARTER_TOKEN)"
    )
    p.add_argument("--json", action="store_true", default=s, help="print JSON for scripts")
    p.add_argument(
        "--http-timeout", dest="timeout", type=float, default=s, help="seconds per network call"
    )
    p.add_argument("--retries", type=int, default=s, help="retries of transient failures")
    p.add_argument("-q", "--quiet", action="store_true", default=s, help="no progress on stderr")
    p.add_argument("-v", "--verbose", action="store_true", default=s, help="log retries")
    return p


_DEFAULTS = {
    "url": None,
    "token_file": None,
    "json": False,
    "timeout": 30.0,
    "retries": 5,
    "quiet": False,
    "verbose": False,
}


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="charter",
        description="Post pipeline results to Charter and wait for approvals.",
        epilog="Exit codes: 0 done/approved, 1 refused by Charter, 2 not approved, "
        "3 timed out, 4 unreachable or local problem, 64 usage.",
        parents=[common],
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", parser_class=_Parser)
    groups.required = True

    def leaf(sub: Any, name: str, func: Callable[[argparse.Namespace], int], help: str) -> Any:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(func=func)
        return p

    def sign_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--sign-key", metavar="KEY.pem", help="sign with this Ed25519 private key")
        p.add_argument("--predicate-type", default=api.DEFAULT_PREDICATE_TYPE)
        p.add_argument("--predicate", type=_json_arg, help="JSON or @file (default: minimal SLSA)")

    # dataset
    sub = groups.add_parser("dataset", help="dataset versions").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    p = leaf(sub, "register", cmd_dataset_register, "register a dataset version (uploads FILE)")
    p.add_argument("--dataset", type=int, required=True, help="dataset id")
    p.add_argument("--version", required=True)
    p.add_argument("file", nargs="?", help="the data (CSV: rows and schema computed locally)")
    p.add_argument("--no-upload", action="store_true", help="send digest and summary only")
    p.add_argument("--uri", help="where the data lives")
    p.add_argument("--license")
    p.add_argument("--sensitivity")
    p.add_argument("--derived-from", type=int, action="append", metavar="ID")
    p.add_argument(
        "--set", type=_field_arg, action="append", metavar="FIELD=VALUE", help="datasheet field"
    )

    # model
    sub = groups.add_parser("model", help="model versions").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    p = leaf(sub, "register", cmd_model_register, "register a model version and its card")
    p.add_argument("--model", type=int, required=True, help="model id")
    p.add_argument("--version", required=True)
    p.add_argument("--metrics", type=_json_arg, help='JSON or @file, e.g. {"auc": 0.91}')
    p.add_argument("--subgroup-metrics", type=_json_arg, help="JSON or @file")
    p.add_argument("--parameters", type=_json_arg, help="JSON or @file")
    for kind in ("training", "validation", "test"):
        p.add_argument(f"--{kind}-dataset", type=int, action="append", metavar="ID")
    p.add_argument("--code-repository")
    p.add_argument("--code-commit")
    p.add_argument("--parent", type=int)
    for name in ("intended-use", "out-of-scope-uses", "limitations", "ethical-considerations"):
        p.add_argument(f"--{name}")
    p.add_argument(
        "--set", type=_field_arg, action="append", metavar="FIELD=VALUE", help="model card field"
    )

    # artifact
    sub = groups.add_parser("artifact", help="artifacts").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    p = leaf(
        sub, "upload", cmd_artifact_upload, "register an artifact by digest, optionally signed"
    )
    p.add_argument("--model-version", type=int, required=True)
    p.add_argument("file", nargs="?", help="the artifact (hashed locally; not uploaded)")
    p.add_argument("--sha256", help="the digest, instead of the file")
    p.add_argument("--size", type=int, help="size in bytes (with --sha256)")
    p.add_argument("--name", help="default: the file's name")
    p.add_argument("--uri", required=True, help="where the artifact lives")
    p.add_argument("--media-type")
    sign_options(p)

    # evidence
    sub = groups.add_parser("evidence", help="evidence").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    p = leaf(sub, "add", cmd_evidence_add, "add evidence to a model version or use case")
    p.add_argument("--kind", required=True, help="e.g. bias_evaluation, validation_report")
    p.add_argument("--title", required=True)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--model-version", type=int)
    target.add_argument("--use-case", type=int)
    p.add_argument("file", nargs="?", help="the report (hashed locally; not uploaded)")
    p.add_argument("--sha256")
    p.add_argument("--size", type=int)
    p.add_argument("--data", type=_json_arg, help="structured results: JSON or @file")
    p.add_argument("--summary")
    p.add_argument("--uri")
    p.add_argument("--media-type")
    sign_options(p)

    # deploy
    p = leaf(groups, "deploy", cmd_deploy, "record a deployment (gated environments need approval)")
    p.add_argument("--model-version", type=int, required=True)
    p.add_argument("--environment", required=True, help="development, staging or production")
    p.add_argument("--region")
    p.add_argument("--strategy")
    p.add_argument("--traffic-share", type=float)
    p.add_argument("--endpoint")
    p.add_argument("--replaces", type=int)
    p.add_argument("--notes")

    # telemetry
    sub = groups.add_parser("telemetry", help="serving telemetry").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    p = leaf(sub, "post", cmd_telemetry_post, "post a batch: columnar JSON, or a CSV/Parquet file")
    p.add_argument("--deployment", type=int, required=True)
    p.add_argument("file", help='JSON {"features": {...}, "predictions": [...]}, .csv or .parquet')
    p.add_argument("--idempotency-key")
    p = leaf(sub, "profile", cmd_telemetry_profile, "post a window profile (JSON file)")
    p.add_argument("--deployment", type=int, required=True)
    p.add_argument("file")
    p.add_argument("--idempotency-key")

    # lineage
    sub = groups.add_parser("lineage", help="OpenLineage events").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    p = leaf(sub, "emit", cmd_lineage_emit, "send an OpenLineage event (a JSON array: a batch)")
    p.add_argument("file", help="JSON file, or - for stdin")

    # approval
    sub = groups.add_parser("approval", help="release approvals").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )

    def wait_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--timeout",
            dest="timeout_wait",
            type=parse_duration,
            default=3600.0,
            help="how long to wait for a decision (e.g. 30m, 1h; default 1h)",
        )
        p.add_argument("--poll", type=parse_duration, default=15.0, help="default 15s")

    p = leaf(sub, "request", cmd_approval_request, "request approval of a model version")
    p.add_argument("--model-version", type=int, required=True)
    p.add_argument("--environment", default="production")
    p.add_argument("--summary")
    p.add_argument("--wait", action="store_true", help="then wait for the decision")
    wait_options(p)
    p = leaf(sub, "wait", cmd_approval_wait, "wait for a decision (exit 0 only when approved)")
    p.add_argument("--request", type=int, required=True, help="approval request id")
    wait_options(p)
    p = leaf(sub, "get", cmd_approval_get, "show an approval request")
    p.add_argument("--request", type=int, required=True)

    # key
    sub = groups.add_parser("key", help="signing keys").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    p = leaf(sub, "generate", cmd_key_generate, "generate an Ed25519 key pair")
    p.add_argument("--out", required=True, help="private key file (written 0600)")
    p.add_argument("--public-out", help="public key file (default: OUT with .pub.pem)")
    p.add_argument("--force", action="store_true")
    p = leaf(sub, "id", cmd_key_id, "print a key's Charter key id")
    p.add_argument("file")
    p = leaf(sub, "register", cmd_key_register, "register a public key with Charter")
    p.add_argument("file", help="public (or private: only the public half is sent) key PEM")
    p.add_argument("--name", default="")
    p.add_argument("--kind", default="pipeline", choices=["pipeline", "person"])

    # profile
    sub = groups.add_parser("profile", help="drift reference profiles").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=_Parser
    )
    p = leaf(
        sub,
        "reference",
        cmd_profile_reference,
        "compute a reference profile locally (needs Charter's workers.drift)",
    )
    p.add_argument("file", help="CSV or Parquet")
    p.add_argument("--out", help="write the profile JSON here")
    p.add_argument("--dataset-version", type=int, help="and set it on this dataset version")
    p.add_argument("--prediction-column", default="")
    p.add_argument("--label-column", default="")
    return parser


def _report(args: argparse.Namespace, exc: CharterError) -> None:
    print(f"charter: error: {exc}", file=sys.stderr)
    if exc.request_id:
        print(f"  (request id {exc.request_id})", file=sys.stderr)
    if args.json:
        error = {"status": exc.status, "detail": exc.detail, "errors": exc.errors}
        json.dump({"error": error}, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``charter`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    for name, value in _DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, value)
    logging.basicConfig(
        level=logging.INFO if args.verbose else (logging.ERROR if args.quiet else logging.WARNING),
        format="charter: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except ConnectionFailed as exc:
        _report(args, exc)
        return EXIT_LOCAL
    except CharterError as exc:
        _report(args, exc)
        return EXIT_REFUSED
    except LocalError as exc:
        print(f"charter: error: {exc}", file=sys.stderr)
        return EXIT_LOCAL
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
