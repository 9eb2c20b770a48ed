"""Audit chain cost (issue 3): write overhead and verification speed.

    .venv/bin/python bench/audit_bench.py [--seconds 10] [--events 1000000] [--procs 1,8]
        [--short] [--json PATH]

``--short``: 3 s per write run, 1 process only, 50,000 events to verify.

(i) Writes/s of ``registry.services.update_use_case`` (full_clean, save and an
audit event) against a baseline doing the same full_clean + save in
``transaction.atomic`` without ``record()``, with 1 and 8 concurrent processes
(each its own connection and its own use case).

(ii) Verification speed over N synthetic valid events (RFC 8785 payloads hashed
in Python, loaded with COPY after a TRUNCATE) for ``verify_chain`` fast and deep
modes, against raw ``hashlib.sha256`` over the same (prev_hash + payload) bytes
in memory.

(iii) Over that chain, the time to count and read one page of the audit trail (the newest,
the middle and the last page unfiltered, the first page filtered by action, actor and object)
with ``audits.pagination.TrailPaginator``, against Django's ``Paginator`` on the same
queryset.

Runs against its own database (``charter_audit_bench``, created and migrated if
missing); the audit table there is truncated for (ii).
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = os.environ.setdefault("BENCH_DATABASE_NAME", "charter_audit_bench")
os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DB}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("CHARTER_VAR_DIR", str(ROOT / "var" / "bench"))


def ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DB}"')


def setup_django() -> None:
    import django

    django.setup()


# ----------------------------------------------------------------- (i) writes


def _writer(mode: str, seconds: float, start: Any, out: Any) -> None:
    """One client process. Modes:

    - ``plain``: the same row update through the ORM (full_clean + save), no service layer
    - ``service-noaudit`` / ``service``: registry.services.update_use_case without / with
      its audit event (the baseline replaces ``record`` with a no-op in this process only)
    - ``api-noaudit`` / ``api``: an authenticated ``PATCH /api/v1/use-cases/<id>/`` through
      Django's full request stack, without / with the audit event
    """
    setup_django()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection, transaction
    from django.test import Client

    from portal.permissions import Access
    from registry import services
    from registry.models import UseCase

    access = Access.system()
    uc = services.create_use_case(
        access, name=f"bench {uuid.uuid4().hex}", purpose="p", risk_tier="high"
    )
    uc = UseCase.objects.get(pk=uc.pk)
    if mode.endswith("noaudit"):
        services.record = lambda *args, **kwargs: None  # type: ignore[assignment]
    client = None
    if mode.startswith("api"):
        user = get_user_model().objects.create_user(f"bench-{uuid.uuid4().hex[:12]}")
        user.groups.add(Group.objects.get(name="risk officer"))
        client = Client()
        client.force_login(user)
        # warm up: the first request imports the URLconf and every app's views (seconds)
        client.patch(
            f"/api/v1/use-cases/{uc.pk}/",
            data='{"purpose": "warm"}',
            content_type="application/json",
        )
    start.wait()
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        value = f"Purpose {n % 2}"
        if client is not None:
            response = client.patch(
                f"/api/v1/use-cases/{uc.pk}/",
                data=f'{{"purpose": "{value}"}}',
                content_type="application/json",
            )
            assert response.status_code == 200, response.content
        elif mode.startswith("service"):
            services.update_use_case(access, uc, purpose=value)
        else:
            with transaction.atomic():
                uc.purpose = value
                uc.full_clean()
                uc.save()
        n += 1
    out.put((n, time.perf_counter() - t0))
    connection.close()


def writes_per_second(mode: str, procs: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(procs)
    out = ctx.Queue()
    workers = [ctx.Process(target=_writer, args=(mode, seconds, start, out)) for _ in range(procs)]
    for w in workers:
        w.start()
    results = [out.get() for _ in workers]
    for w in workers:
        w.join()
    return sum(n for n, _ in results) / max(t for _, t in results)


# ---------------------------------------------------------- (ii) verification

COLUMNS = (
    "seq, created_at, actor_id, actor_repr, action, object_type, object_id, object_repr, "
    "changes, request_id, client_ip, user_agent, channel, payload, prev_hash, hash"
)


def fill_chain(n: int) -> list[bytes]:
    """TRUNCATE and COPY n valid events; return each event's prev_hash + payload bytes."""
    import psycopg
    import rfc8785
    from psycopg.types.json import Jsonb

    blobs: list[bytes] = []
    prev = "0" * 64
    base = datetime(2026, 1, 1, tzinfo=UTC)
    actions = ["create", "update", "transition", "view", "download"]
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        conn.execute("SET charter.allow_truncate = 'on'")
        conn.execute("TRUNCATE audits_auditevent, audits_checkpoint, audits_chainhead")
        with conn.cursor() as cur, cur.copy(f"COPY audits_auditevent ({COLUMNS}) FROM STDIN") as cp:
            for seq in range(1, n + 1):
                when = base + timedelta(milliseconds=seq)
                action = actions[seq % 5]
                object_id = str(seq % 5000 + 1)
                changes = {
                    "before": {"purpose": f"Purpose {seq % 2}", "risk_tier": "high"},
                    "after": {"purpose": f"Purpose {(seq + 1) % 2}", "score": seq / 7},
                }
                request_id = f"{seq:032x}"
                event = {
                    "seq": seq,
                    "time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "actor": f"user{seq % 50}",
                    "actor_id": seq % 50 + 1,
                    "action": action,
                    "object_type": "registry.usecase",
                    "object_id": object_id,
                    "object_repr": f"Use case {object_id} — crédit",
                    "changes": changes,
                    "request_id": request_id,
                    "client_ip": "10.0.0.1",
                    "user_agent": "Mozilla/5.0 (bench)",
                    "channel": "web",
                    "token_id": None,
                }
                payload = rfc8785.dumps(event)
                blob = prev.encode("ascii") + payload
                digest = hashlib.sha256(blob).hexdigest()
                blobs.append(blob)
                cp.write_row(
                    (
                        seq,
                        when,
                        seq % 50 + 1,
                        event["actor"],
                        action,
                        "registry.usecase",
                        object_id,
                        event["object_repr"],
                        Jsonb(changes),
                        request_id,
                        "10.0.0.1",
                        "Mozilla/5.0 (bench)",
                        "web",
                        payload.decode("utf-8"),
                        prev,
                        digest,
                    )
                )
                prev = digest
        conn.commit()
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE audits_auditevent")
    return blobs


def reuse_chain(n: int) -> list[bytes] | None:
    """The prev_hash + payload bytes of a chain of exactly n events already in the table."""
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        count, top = conn.execute("SELECT count(*), max(seq) FROM audits_auditevent").fetchone()
        if count != n or top != n:
            return None
        rows = conn.execute("SELECT prev_hash, payload FROM audits_auditevent ORDER BY seq")
        blobs = [(p + body).encode() for p, body in rows]
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE audits_auditevent")
    return blobs


def raw_hash_rate(blobs: list[bytes]) -> float:
    sha256 = hashlib.sha256
    t0 = time.perf_counter()
    for blob in blobs:
        sha256(blob).hexdigest()
    return len(blobs) / (time.perf_counter() - t0)


def verify_rate(deep: bool, n: int) -> float:
    from audits.verify import verify_chain

    t0 = time.perf_counter()
    result = verify_chain(deep=deep)
    elapsed = time.perf_counter() - t0
    assert result.ok and result.length == n, result
    return n / elapsed


# ------------------------------------------------------- (iii) the trail's pages


TRAIL_PAGES = (
    ("newest page, no filter", "", 1),
    ("middle page, no filter", "", "middle"),
    ("last page, no filter", "", "last"),
    ("first page, action=view (1 event in 5)", "action=view", 1),
    ("first page, actor=user7 (1 event in 50)", "actor=user7", 1),
    ("first page, one object (200 events)", "object_type=registry.usecase&object_id=42", 1),
)


def trail_paging(n: int, repeat: int = 7) -> list[dict[str, Any]]:
    """Median time to count and read one page of the audit trail (50 rows) over the chain
    just verified, filtered as the trail's form does (``AuditEventFilter``): Charter's
    ``TrailPaginator`` against Django's ``Paginator`` (COUNT(*) and OFFSET) on the same
    queryset, in the same process."""
    import statistics

    from django.core.paginator import Paginator
    from django.http import QueryDict

    from audits.filters import AuditEventFilter
    from audits.models import AuditEvent
    from audits.pagination import TrailPaginator

    results = []
    for label, query, which in TRAIL_PAGES:
        qs = AuditEventFilter(QueryDict(query), queryset=AuditEvent.objects.order_by("-seq")).qs
        number = {"middle": -(-n // 100), "last": -(-n // 50)}.get(which, which)

        def read(make: Any, number: int = number) -> float:
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                paginator = make()
                page = paginator.get_page(number)
                rows = [e.seq for e in page.object_list]
                assert rows and paginator.num_pages >= 1
                times.append(time.perf_counter() - t0)
            return statistics.median(times) * 1000

        whole = not query
        charter = read(lambda qs=qs, whole=whole: TrailPaginator(qs, 50, whole_chain=whole))
        django = read(lambda qs=qs: Paginator(qs, 50))
        print(f"trail {label} (page {number:,}): {charter:.2f} ms vs Django {django:.2f} ms")
        results.append({"label": label, "page": number, "charter": charter, "django": django})
    return results


# ------------------------------------------------------------------- report


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    return (
        f"{os.cpu_count()} CPUs (nproc), {mem_kb / 1024 / 1024:.1f} GiB RAM, {model}; "
        f"Python {platform.python_version()}"
    )


def main() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from _common import parse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="seconds per write run (full: 10)")
    parser.add_argument("--events", type=int, help="events to verify (full: 1,000,000)")
    parser.add_argument("--procs", help="comma-separated client process counts (full: 1,8)")
    parser.add_argument("--skip-writes", action="store_true")
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep a chain of exactly --events events already loaded (raw hashing reads it back)",
    )
    args = parse(
        parser,
        full={"seconds": 10.0, "events": 1_000_000, "procs": "1,8"},
        short={"seconds": 3.0, "events": 50_000, "procs": "1"},
    )

    ensure_database()
    setup_django()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    pg = connection.cursor().connection.info.server_version
    connection.close()

    print(f"machine: {machine()}; PostgreSQL {pg // 10000}.{pg % 10000}")
    rows: list[tuple[str, str, str, str]] = []
    write_rates: dict[int, dict[str, float]] = {}
    if not args.skip_writes:
        for procs in (int(p) for p in args.procs.split(",")):
            rates = {
                mode: writes_per_second(mode, procs, args.seconds)
                for mode in ("plain", "service-noaudit", "service", "api-noaudit", "api")
            }
            write_rates[procs] = rates
            print(f"writes, {procs} proc: " + ", ".join(f"{k} {v:.0f}/s" for k, v in rates.items()))
            label = f"{procs} process{'es' if procs > 1 else ''}"
            rows.append(
                (
                    f"update_use_case service call, {label}",
                    f"{rates['service-noaudit']:,.0f} writes/s",
                    f"{rates['service']:,.0f} writes/s",
                    f"audit adds {rates['service-noaudit'] / rates['service'] - 1:.0%} per write",
                )
            )
            rows.append(
                (
                    f"PATCH /api/v1/use-cases/<id>/, {label}",
                    f"{rates['api-noaudit']:,.0f} writes/s",
                    f"{rates['api']:,.0f} writes/s",
                    f"audit adds {rates['api-noaudit'] / rates['api'] - 1:.0%} per write",
                )
            )
            rows.append(
                (
                    f"(reference) plain ORM full_clean + save, {label}",
                    f"{rates['plain']:,.0f} writes/s",
                    "–",
                    "no service layer, no audit",
                )
            )

    blobs: list[bytes] = []
    if not args.skip_verify:
        t0 = time.perf_counter()
        blobs = (reuse_chain(args.events) if args.reuse else None) or []
        if not blobs:
            blobs = fill_chain(args.events)
            print(f"filled {args.events:,} events in {time.perf_counter() - t0:.1f} s")
    raw = raw_hash_rate(blobs) if blobs else 0.0
    del blobs
    verify_rates: dict[str, float] = {}
    for deep in (False, True) if raw else ():
        rate = verify_rate(deep, args.events)
        label = "deep" if deep else "fast"
        verify_rates[label] = rate
        print(f"verify {label}: {rate:,.0f} events/s vs raw {raw:,.0f}/s = {rate / raw:.0%}")
        rows.append(
            (
                f"verify_chain {label}, {args.events:,} events",
                f"{raw:,.0f} hashes/s (raw)",
                f"{rate:,.0f} events/s",
                f"{rate / raw:.0%} of raw hashing",
            )
        )
    paging = trail_paging(args.events) if verify_rates else []
    for p in paging:
        rows.append(
            (
                f"audit trail, {p['label']}, page {p['page']:,} of {args.events:,} events",
                f"{p['django']:.1f} ms (Django Paginator)",
                f"{p['charter']:.1f} ms",
                f"{p['django'] / p['charter']:.1f}× Django's speed",
            )
        )
    print()
    print("| measurement | baseline | with audit chain | result |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    write_figures(args, write_rates, verify_rates, raw, f"{pg // 10000}.{pg % 10000}", paging)


WRITE_TARGET = 0.25  # the audit event adds under 25% per write
VERIFY_TARGET = 0.5  # verification at half the speed of raw hashing or better


def write_figures(
    args: argparse.Namespace,
    write_rates: dict[int, dict[str, float]],
    verify_rates: dict[str, float],
    raw: float,
    pg: str,
    paging: list[dict[str, Any]],
) -> None:
    from _common import figure, pct, write_json

    figures = []
    for procs, rates in write_rates.items():
        label = f"{procs} process{'es' if procs > 1 else ''}"
        for mode, what in (
            ("api", "PATCH /api/v1/use-cases/<id>/ (full request stack)"),
            ("service", "registry.services.update_use_case alone"),
        ):
            overhead = rates[f"{mode}-noaudit"] / rates[mode] - 1
            figures.append(
                figure(
                    f"{what}, {label}",
                    rates[mode],
                    "writes/s",
                    target="audit adds < 25%",
                    ok=overhead < WRITE_TARGET,
                    peer="same code path, record() a no-op",
                    peer_value=rates[f"{mode}-noaudit"],
                    ratio_text=f"audit adds {pct(overhead)}",
                )
            )
        figures.append(
            figure(f"(reference) plain ORM full_clean + save, {label}", rates["plain"], "writes/s")
        )
    for label, rate in verify_rates.items():
        figures.append(
            figure(
                f"verify_chain({'deep=True' if label == 'deep' else 'deep=False'}), "
                f"{args.events:,} events",
                rate,
                "events/s",
                target="≥ 50% of raw hashing" if label == "fast" else None,
                ok=rate / raw >= VERIFY_TARGET if label == "fast" else None,
                peer="raw hashlib.sha256 over the same bytes in memory",
                peer_value=raw,
                peer_unit="hashes/s",
                ratio_text=pct(rate / raw),
            )
        )
    for p in paging:
        figures.append(
            figure(
                f"audit trail: count + read one page of 50, {p['label']}, page {p['page']:,} "
                f"of {args.events:,} events",
                p["charter"],
                "ms",
                peer="Django's Paginator on the same queryset (COUNT(*), OFFSET)",
                peer_value=p["django"],
                ratio=p["django"] / p["charter"],
                ratio_text=f"{p['django'] / p['charter']:.1f}× Django's speed",
            )
        )
    write_json(
        args,
        bench="audit",
        figures=figures,
        extra={"postgresql": pg, "machine": machine(), "write_rates": write_rates},
    )


if __name__ == "__main__":
    main()
