"""What every bench shares: ``--short``/``--json`` options and the machine-readable result.

A bench script adds its size options with ``default=None``, then calls
``parse(parser, full={...}, short={...})``: options left unset take the full-mode size (the
issue's figure) or, with ``--short``, a small size that runs in about a minute. At the end it
calls ``write_json(args, bench=..., figures=[figure(...), ...])``, which does nothing without
``--json PATH``.

A figure is one measured number beside its target and its peer::

    {"name": "verify_chain fast, 1,000,000 events", "value": 557000.0, "unit": "events/s",
     "target": "≥ 50% of raw hashing", "peer": "raw hashlib.sha256 over the same bytes",
     "peer_value": 1180000.0, "peer_unit": "hashes/s", "ratio": 0.47, "ratio_text": "47%",
     "verdict": "miss", "note": null}

``verdict`` is ``pass`` or ``miss`` when the figure has a target, ``info`` when it has none.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

SCHEMA = 1


def parse(
    parser: argparse.ArgumentParser,
    full: dict[str, Any],
    short: dict[str, Any],
    argv: list[str] | None = None,
) -> argparse.Namespace:
    """Parse with ``--short`` and ``--json``; unset size options take the mode's value."""
    parser.add_argument(
        "--short", action="store_true", help="small sizes that finish in about a minute"
    )
    parser.add_argument(
        "--json", dest="json_path", type=Path, help="write figures, targets and peers here"
    )
    args = parser.parse_args(argv)
    sizes = short if args.short else full
    for key, value in sizes.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.mode = "short" if args.short else "full"
    args.started = time.time()
    return args


def figure(
    name: str,
    value: float | None,
    unit: str,
    *,
    target: str | None = None,
    ok: bool | None = None,
    peer: str | None = None,
    peer_value: float | None = None,
    peer_unit: str | None = None,
    ratio: float | None = None,
    ratio_text: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """One figure. ``ratio`` defaults to value / peer_value; ``ok`` None means no target."""
    if ratio is None and value is not None and peer_value:
        ratio = value / peer_value
    if ratio is not None and ratio_text is None:
        ratio_text = f"{ratio:.3g}×"
    if value is None:
        verdict = "n/a"
    elif ok is None:
        verdict = "info"
    else:
        verdict = "pass" if ok else "miss"
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "target": target,
        "peer": peer,
        "peer_value": peer_value,
        "peer_unit": peer_unit or (unit if peer_value is not None else None),
        "ratio": ratio,
        "ratio_text": ratio_text,
        "verdict": verdict,
        "note": note,
    }


def pct(ratio: float) -> str:
    return f"{ratio:.0%}"


def write_json(
    args: argparse.Namespace,
    *,
    bench: str,
    figures: list[dict[str, Any]],
    params: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    skipped: dict[str, str] | None = None,
) -> None:
    """Write the result file named by ``--json`` (no-op without it).

    ``skipped`` names the parts that did not run, with why (shown beside the figures).
    """
    path: Path | None = getattr(args, "json_path", None)
    if path is None:
        return
    result = {
        "schema": SCHEMA,
        "bench": bench,
        "mode": args.mode,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "params": params if params is not None else _params(args),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(args.started)),
        "seconds": round(time.time() - args.started, 1),
        "python": platform.python_version(),
        "database": os.environ.get("BENCH_DATABASE_NAME"),
        "figures": figures,
        "skipped": skipped or {},
        "extra": extra or {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")


def _params(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"json_path", "started", "short"}
    return {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in skip
    }
