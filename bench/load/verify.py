"""After a load run: is every accepted write present exactly once, and nothing else written?

    python bench/load/verify.py --writelog writes.jsonl [--out verification.json]

Reads the locustfile's write log (``sent`` / ``ok`` / ``refused`` lines) and the database
(``DATABASE_URL``) and checks, per kind of write:

* **accepted** writes (an ``ok`` line) are present exactly once, with the id the server
  answered; **in-doubt** writes (sent, never answered: every attempt failed, or the run
  stopped mid-request) are present at most once; **refused** ones (a 4xx) are absent;
* nothing the load wrote is present without a ``sent`` line (no phantom or doubled rows);
* every written model version, evidence item and lineage event has exactly one audit event;
* telemetry: every stored batch is folded without error, and each deployment's window row
  and batch counts equal the sums over its stored batches (nothing folded twice or lost).

Prints the outcome as JSON; exit status 1 when any check fails. The audit chain itself is
verified by ``manage.py verify_audit`` (run.py runs both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from django.db.models import Count, Sum  # noqa: E402

from audits.models import AuditEvent  # noqa: E402
from lineage.models import LineageEvent  # noqa: E402
from registry.models import Evidence, ModelVersion  # noqa: E402
from workers.models import TelemetryBatch, WindowProfile  # noqa: E402

#: What identifies a write of each kind in the log and in the database.
KINDS = ("telemetry", "lineage", "model_version", "evidence")


def natural_key(record: dict[str, Any]) -> tuple[Any, ...]:
    t = record["t"]
    if t == "telemetry":
        return (record["deployment"], record["key"])
    if t == "lineage":
        return (record["sha256"],)
    if t == "model_version":
        return (record["model"], record["version"])
    return (record["title"],)


def read_log(path: Path) -> dict[str, dict[str, Any]]:
    """Per kind: ``sent`` (key -> record), ``ok`` (key -> answer record), ``refused`` keys."""
    out: dict[str, dict[str, Any]] = {t: {"sent": {}, "ok": {}, "refused": set()} for t in KINDS}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by a killed load generator: its write is in doubt
            continue
        kind, key = out[record["t"]], natural_key(record)
        if record["phase"] == "sent":
            kind["sent"][key] = record
        elif record["phase"] == "ok":
            kind["ok"][key] = record
        else:
            kind["refused"].add(key)
    return out


def _compare(
    log: dict[str, Any], present: dict[tuple[Any, ...], list[Any]], answer_id: Any
) -> dict[str, Any]:
    """Counts of a kind: ``present`` maps a natural key to the ids stored under it."""
    sent, ok, refused = log["sent"], log["ok"], log["refused"]
    missing, doubled, wrong_id, in_doubt_present, refused_present = [], [], [], 0, []
    for key, record in ok.items():
        ids = present.get(key, [])
        if not ids:
            missing.append(key)
        elif len(ids) > 1:
            doubled.append(key)
        elif answer_id is not None and answer_id(record) != ids[0]:
            wrong_id.append(key)
    in_doubt = [k for k in sent if k not in ok and k not in refused]
    for key in in_doubt:
        n = len(present.get(key, []))
        in_doubt_present += n == 1
        if n > 1:
            doubled.append(key)
    for key in refused:
        if present.get(key):
            refused_present.append(key)
    unexpected = [k for k in present if k not in sent]
    return {
        "sent": len(sent),
        "accepted": len(ok),
        "replayed": sum(1 for r in ok.values() if r.get("replayed")),
        "refused": len(refused),
        "in_doubt": len(in_doubt),
        "in_doubt_present": in_doubt_present,
        "present": sum(len(v) for v in present.values()),
        "missing": len(missing),
        "doubled": len(doubled),
        "wrong_id": len(wrong_id),
        "refused_present": len(refused_present),
        "unexpected": len(unexpected),
        "examples": [str(k) for k in (missing + doubled + wrong_id + unexpected)[:5]],
    }


def _audit(object_type: str, ids: list[int], action: str | None) -> dict[str, int]:
    """How many of ``ids`` have no audit event, and how many more than one."""
    events = AuditEvent.objects.filter(object_type=object_type, object_id__in=[str(i) for i in ids])
    if action:
        events = events.filter(action=action)
    counts = dict(
        events.values_list("object_id").annotate(n=Count("id")).values_list("object_id", "n")
    )
    return {
        "objects": len(ids),
        "without_audit_event": sum(1 for i in ids if str(i) not in counts),
        "with_several": sum(1 for n in counts.values() if n > 1),
    }


def _group(rows: Any) -> dict[tuple[Any, ...], list[Any]]:
    present: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for *key, pk in rows:
        present[tuple(key)].append(pk)
    return present


def verify(writelog: Path) -> dict[str, Any]:
    log = read_log(writelog)
    result: dict[str, Any] = {}

    batches = TelemetryBatch.objects.filter(idempotency_key__startswith="load-")
    present = _group(batches.values_list("deployment_id", "idempotency_key", "pk"))
    tele = _compare(log["telemetry"], present, lambda r: r["answer"]["id"])
    tele["unfolded"] = batches.filter(folded_at__isnull=True).count()
    tele["fold_errors"] = batches.filter(result__has_key="error").count()
    tele["rows_accepted"] = sum(r["rows"] for r in log["telemetry"]["ok"].values())
    stored = dict(
        batches.values_list("deployment_id")
        .annotate(rows=Sum("rows"), n=Count("id"))
        .values_list("deployment_id", "rows")
    )
    counted = dict(
        batches.values_list("deployment_id")
        .annotate(n=Count("id"))
        .values_list("deployment_id", "n")
    )
    deployments = set(stored) | set(
        WindowProfile.objects.filter(rows__gt=0).values_list("deployment_id", flat=True)
    )
    mismatches = []
    for dep in sorted(deployments):
        windows = WindowProfile.objects.filter(deployment_id=dep).aggregate(
            rows=Sum("rows"), batches=Sum("batches")
        )
        if (windows["rows"] or 0) != stored.get(dep, 0) or (windows["batches"] or 0) != counted.get(
            dep, 0
        ):
            mismatches.append(
                {
                    "deployment": dep,
                    "window_rows": windows["rows"],
                    "batch_rows": stored.get(dep, 0),
                    "window_batches": windows["batches"],
                    "stored_batches": counted.get(dep, 0),
                }
            )
    tele["rows_stored"] = sum(stored.values())
    tele["rows_in_windows"] = (
        WindowProfile.objects.filter(deployment_id__in=deployments).aggregate(n=Sum("rows"))["n"]
        or 0
    )
    tele["window_mismatches"] = mismatches
    result["telemetry"] = tele

    events = LineageEvent.objects.filter(job_namespace="load-etl")
    present = _group(events.values_list("sha256", "pk"))
    lin = _compare(log["lineage"], present, lambda r: r["answer"]["id"])
    lin["audit"] = _audit("lineage.lineageevent", [i for v in present.values() for i in v], None)
    result["lineage"] = lin

    mvs = ModelVersion.objects.filter(version__startswith="load-")
    present = _group(mvs.values_list("model_id", "version", "pk"))
    mv = _compare(log["model_version"], present, lambda r: r["answer"]["id"])
    mv["audit"] = _audit(
        "registry.modelversion", [i for v in present.values() for i in v], AuditEvent.Action.CREATE
    )
    result["model_version"] = mv

    evidence = Evidence.objects.filter(title__startswith="Validation report load-")
    present = _group(evidence.values_list("title", "pk"))
    ev = _compare(log["evidence"], present, lambda r: r["answer"]["id"])
    ev["audit"] = _audit(
        "registry.evidence", [i for v in present.values() for i in v], AuditEvent.Action.CREATE
    )
    result["evidence"] = ev

    failures = []
    for kind in KINDS:
        r = result[kind]
        for field in ("missing", "doubled", "wrong_id", "refused_present", "unexpected"):
            if r[field]:
                failures.append(f"{kind}: {r[field]} {field}")
        audit = r.get("audit")
        if audit and (audit["without_audit_event"] or audit["with_several"]):
            failures.append(f"{kind}: audit events {audit}")
    if tele["unfolded"] or tele["fold_errors"]:
        failures.append(f"telemetry: {tele['unfolded']} unfolded, {tele['fold_errors']} failed")
    if mismatches:
        failures.append(f"telemetry: {len(mismatches)} deployments whose windows disagree")
    result["ok"] = not failures
    result["failures"] = failures
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writelog", required=True, type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = verify(args.writelog)
    text = json.dumps(result, indent=1, default=str)
    if args.out:
        args.out.write_text(text)
    print(text)
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
