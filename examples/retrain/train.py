"""A small, real retraining job for Charter.

It reads the dataset version(s) Charter names, trains a logistic-regression classifier
(scikit-learn; on a GPU through PyTorch when torch is importable and CUDA is present), evaluates
it overall and per subgroup on a held-out split, and posts everything back with the Charter
client: progress, OpenLineage START/COMPLETE, its signing key, the new model version (parent =
the version being retrained, the datasets used, metrics, parameters, code commit), the model
file as a signed artifact, and signed evaluation evidence; then it hands the version to Charter
as its result, and Charter opens the approval request.

Charter starts it with three variables: ``CHARTER_URL``, ``CHARTER_TOKEN`` (scoped to this job)
and ``CHARTER_JOB`` (JSON: job id, model, base version, datasets, parameters). Parameters
(``CHARTER_JOB["parameters"]``): ``label`` (target column, default ``label``), ``subgroup``
(column to evaluate per group, default ``region``), ``C``, ``max_iter``, ``test_size``,
``seed``, ``sleep_s`` (wait before training: lets tests cancel a running job), ``exit_code``
(fail on purpose after starting).

Run by hand::

    CHARTER_URL=http://127.0.0.1:8000 CHARTER_TOKEN=chtr_… CHARTER_JOB="$(cat job.json)" \\
        python examples/retrain/train.py
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
try:
    import charter_client  # noqa: F401
except ImportError:  # run from a checkout: the client is in client/src
    sys.path.insert(0, str(ROOT / "client" / "src"))

from charter_client import Client, signing  # noqa: E402
from charter_client.errors import CharterError, NotFound  # noqa: E402

log = logging.getLogger("charter.retrain")
PRODUCER = "https://github.com/charter/charter/tree/main/examples/retrain"
FACET_SCHEMA = "https://openlineage.io/spec/facets/1-0-0/CharterFacet.json#/$defs/CharterFacet"


# ---------------------------------------------------------------- data


def read_csv(path: Path) -> dict[str, list[str]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns: dict[str, list[str]] = {name: [] for name in reader.fieldnames or []}
        for row in reader:
            for name in columns:
                columns[name].append(row[name])
    return columns


def fetch(client: Client, ds: dict[str, Any], workdir: Path) -> Path:
    """The dataset's file: a local path from the spec, a file:// URI, or the portal's copy."""
    if ds.get("path") and Path(ds["path"]).exists():
        return Path(ds["path"])
    uri = ds.get("uri", "")
    if uri.startswith("file://") and Path(uri[7:]).exists():
        return Path(uri[7:])
    if ds.get("download"):
        target = workdir / f"dataset-{ds['id']}.csv"
        client.download(ds["download"], target)
        return target
    raise SystemExit(f"dataset version {ds['id']} has no path, file:// URI or uploaded file")


def check_digest(path: Path, expected: str) -> str:
    sha, _ = signing.sha256_file(path)
    if expected and sha != expected:
        raise SystemExit(f"{path}: SHA-256 {sha} differs from the registered {expected}")
    return sha


def design(
    columns: dict[str, list[str]], label: str, subgroup: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Numeric features as they are, categorical ones one-hot; the label as 0/1."""
    y = np.array(
        [1.0 if v.strip().lower() in ("1", "true", "yes") else 0.0 for v in columns[label]]
    )
    groups = np.array(columns.get(subgroup, ["all"] * len(y)))
    blocks, names = [], []
    for name, values in columns.items():
        if name == label:
            continue
        try:
            numbers = np.array([float(v) for v in values])
            blocks.append(numbers[:, None])
            names.append(name)
        except ValueError:
            for level in sorted(set(values)):
                blocks.append(np.array([1.0 if v == level else 0.0 for v in values])[:, None])
                names.append(f"{name}={level}")
    x = np.hstack(blocks)
    return x, y, groups, names


# ---------------------------------------------------------------- training


def device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def train(x: np.ndarray, y: np.ndarray, params: dict[str, Any]) -> tuple[np.ndarray, float, str]:
    """Logistic regression on standardised features: (weights, bias, how)."""
    c = float(params.get("C", 1.0))
    max_iter = int(params.get("max_iter", 500))
    if device() == "cuda":
        import torch

        xt = torch.tensor(x, dtype=torch.float32, device="cuda")
        yt = torch.tensor(y, dtype=torch.float32, device="cuda")
        w = torch.zeros(x.shape[1], device="cuda", requires_grad=True)
        b = torch.zeros(1, device="cuda", requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=max_iter)

        def closure() -> Any:
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt)
            loss = loss + (w @ w) / (2 * c * len(yt))
            loss.backward()
            return loss

        opt.step(closure)
        return w.detach().cpu().numpy(), float(b.detach().cpu()), "torch-lbfgs (cuda)"
    try:
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=c, max_iter=max_iter)
        model.fit(x, y)
        return model.coef_[0], float(model.intercept_[0]), "scikit-learn lbfgs (cpu)"
    except ImportError:
        w, b = np.zeros(x.shape[1]), 0.0
        for _ in range(max_iter):
            p = 1 / (1 + np.exp(-(x @ w + b)))
            w -= 0.5 * (x.T @ (p - y) / len(y) + w / (c * len(y)))
            b -= 0.5 * float(np.mean(p - y))
        return w, b, "numpy gradient descent (cpu)"


def auc(y: np.ndarray, score: np.ndarray) -> float | None:
    pos, neg = score[y == 1], score[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    allv = np.concatenate([pos, neg])
    for value in np.unique(allv):  # average ranks of ties
        same = allv == value
        ranks[same] = ranks[same].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def scores(y: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    pred = prob >= 0.5
    tp = float(np.sum(pred & (y == 1)))
    fp = float(np.sum(pred & (y == 0)))
    fn = float(np.sum(~pred & (y == 1)))
    out = {
        "accuracy": float(np.mean(pred == (y == 1))),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "rows": float(len(y)),
    }
    a = auc(y, prob)
    if a is not None:
        out["auc"] = a
    return {k: round(v, 6) for k, v in out.items() if math.isfinite(v)}


# ---------------------------------------------------------------- lineage


def facet(**fields: Any) -> dict[str, Any]:
    return {"_producer": PRODUCER, "_schemaURL": FACET_SCHEMA, **fields}


def lineage_event(
    kind: str, run_id: str, job: dict[str, Any], inputs: list[dict], outputs: list[dict]
) -> dict[str, Any]:
    return {
        "eventType": kind,
        "eventTime": datetime.now(UTC).isoformat(),
        "producer": PRODUCER,
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {
            "runId": run_id,
            "facets": {"charter": facet(useCase=job["use_case"], retrainingJob=job["id"])},
        },
        "job": {"namespace": "charter.retraining", "name": f"{job['model_name']}.retrain"},
        "inputs": inputs,
        "outputs": outputs,
    }


def emit(client: Client, event: dict[str, Any], sent: list[dict]) -> None:
    """Send an OpenLineage event; a portal without the lineage intake is not fatal."""
    try:
        client.emit_lineage(event)
        sent.append({"eventType": event["eventType"], "accepted": True})
    except NotFound:
        log.warning("the portal has no OpenLineage intake; %s not recorded", event["eventType"])
        sent.append({"eventType": event["eventType"], "accepted": False})


# ---------------------------------------------------------------- the job


def code_commit(ctx: dict[str, Any]) -> str:
    if ctx.get("code_commit"):
        return ctx["code_commit"]
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def run(client: Client, ctx: dict[str, Any], workdir: Path) -> int:
    job_id = ctx["id"]
    params = {
        "label": "label",
        "subgroup": "region",
        "C": 1.0,
        "max_iter": 500,
        **ctx["parameters"],
    }
    progress = lambda p, m: client.post_job_progress(job_id, p, m)  # noqa: E731
    progress(0.05, "starting")
    print(
        f"retraining job #{job_id}: model {ctx['model_name']}, device {device()}, "
        f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')}",
        flush=True,
    )
    if params.get("sleep_s"):
        time.sleep(float(params["sleep_s"]))
    if params.get("exit_code"):
        print(f"failing on purpose with exit code {params['exit_code']}", flush=True)
        return int(params["exit_code"])

    private_pem, public_pem = signing.generate_key()
    key = client.register_signing_key(public_pem, f"retraining job #{job_id}")
    print(f"signing key {key['key_id'][:16]}… registered", flush=True)

    run_id = str(uuid.uuid4())
    inputs = [
        {
            "namespace": "charter",
            "name": f"{ds['dataset']}@{ds['version']}",
            "facets": {"charter": facet(datasetVersion=ds["id"], sha256=ds["sha256"])},
        }
        for ds in ctx["datasets"]
    ]
    sent: list[dict] = []
    emit(client, lineage_event("START", run_id, ctx, inputs, []), sent)

    progress(0.15, "reading data")
    frames: dict[str, list[str]] = {}
    for ds in ctx["datasets"]:
        path = fetch(client, ds, workdir)
        check_digest(path, ds.get("sha256", ""))
        for name, values in read_csv(path).items():
            frames.setdefault(name, []).extend(values)
    x, y, groups, names = design(frames, params["label"], params["subgroup"])
    print(f"{len(y)} rows, {x.shape[1]} features: {', '.join(names)}", flush=True)

    progress(0.35, "training")
    rng = np.random.default_rng(int(params.get("seed", 0)))
    test = rng.random(len(y)) < float(params.get("test_size", 0.3))
    mean, std = x[~test].mean(axis=0), x[~test].std(axis=0)
    std[std == 0] = 1.0
    xs = (x - mean) / std
    started = time.monotonic()
    w, b, how = train(xs[~test], y[~test], params)
    seconds = time.monotonic() - started
    print(f"trained with {how} in {seconds:.2f}s", flush=True)

    progress(0.6, "evaluating")
    prob = 1 / (1 + np.exp(-(xs[test] @ w + b)))
    overall = scores(y[test], prob)
    per_group = {
        str(g): scores(y[test][groups[test] == g], prob[groups[test] == g])
        for g in sorted(set(groups[test]))
    }
    print(f"overall {json.dumps(overall)}", flush=True)

    model_file = workdir / "model.json"
    model_file.write_text(
        json.dumps(
            {
                "features": names,
                "mean": mean.tolist(),
                "std": std.tolist(),
                "coef": w.tolist(),
                "intercept": b,
                "trainer": how,
            },
            indent=1,
        )
    )
    progress(0.7, "registering the new version")
    base = ctx.get("base_version") or {}
    card: dict[str, Any] = {}
    if base.get("id"):
        previous = client.get(f"model-versions/{base['id']}/")
        card = {
            k: previous.get(k, "")
            for k in ("intended_use", "out_of_scope_uses", "limitations", "ethical_considerations")
        }
    version_name = f"{base.get('version', '0')}-rt{job_id}"
    metrics = {k: v for k, v in overall.items() if k != "rows"}
    subgroup_metrics = {
        g: {k: v for k, v in m.items() if k != "rows"} for g, m in per_group.items()
    }
    mv = client.register_model_version(
        ctx["model"],
        version_name,
        parent=base.get("id"),
        training_datasets=[ds["id"] for ds in ctx["datasets"]],
        metrics=metrics,
        subgroup_metrics=subgroup_metrics,
        parameters={k: v for k, v in params.items() if k not in ("sleep_s", "exit_code")},
        environment={
            "python": platform.python_version(),
            "numpy": np.__version__,
            "trainer": how,
            "device": device(),
            "host": platform.node(),
        },
        code_repository=ctx.get("code_repository") or "examples/retrain",
        code_commit=code_commit(ctx),
        idempotency_key=f"retrain-{ctx['key']}-version",
        **card,
    )
    print(f"registered model version {mv['id']} ({version_name})", flush=True)
    progress(0.8, "uploading the signed artifact and evidence")
    artifact = client.upload_artifact(
        mv["id"],
        model_file,
        name="model.json",
        uri=model_file.as_uri(),
        key=private_pem,
        media_type="application/json",
    )
    report = {
        "overall": overall,
        "subgroups": per_group,
        "test_rows": int(test.sum()),
        "train_rows": int((~test).sum()),
        "trainer": how,
    }
    client.add_evidence(
        "validation_report",
        f"Held-out evaluation of {version_name}",
        model_version=mv["id"],
        data=report,
        summary=f"accuracy {overall['accuracy']:.3f} on {int(test.sum())} rows",
        key=private_pem,
    )
    worst = min((m.get("recall", 0.0) for m in per_group.values()), default=0.0)
    client.add_evidence(
        "bias_evaluation",
        f"Per-{params['subgroup']} evaluation of {version_name}",
        model_version=mv["id"],
        data={"subgroup": params["subgroup"], "groups": per_group, "worst_recall": worst},
        summary=f"worst {params['subgroup']} recall {worst:.3f}",
        key=private_pem,
    )
    output = {
        "namespace": "charter",
        "name": f"{ctx['model_name']}@{version_name}",
        "facets": {"charter": facet(modelVersion=mv["id"], sha256=artifact["sha256"])},
    }
    emit(client, lineage_event("COMPLETE", run_id, ctx, inputs, [output]), sent)
    progress(0.95, "handing the result to Charter")
    client.post_job_result(
        job_id,
        mv["id"],
        {
            "metrics": metrics,
            "artifact": artifact["id"],
            "trainer": how,
            "lineage": sent,
            "lineage_run": run_id,
            "seconds": round(seconds, 3),
        },
    )
    progress(1.0, "done")
    print(f"done: model version {mv['id']} handed to Charter for approval", flush=True)
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    ctx = json.loads(os.environ["CHARTER_JOB"])
    client = Client(timeout=30, retries=5)
    workdir = Path(os.environ.get("CHARTER_WORKDIR") or os.getcwd())
    try:
        return run(client, ctx, workdir)
    except CharterError as exc:
        print(f"Charter refused: {exc}", file=sys.stderr, flush=True)
        traceback.print_exc()
        return 2


if __name__ == "__main__":
    sys.exit(main())
