"""Charter's mixed load: board members, training pipelines, serving fleets, OpenLineage producers.

Run by ``bench/load/run.py`` (``locust --headless``), configured through the environment:

* ``CHARTER_LOAD_FIXTURE`` — the JSON that ``seed.py`` wrote (tokens, ids, passwords);
* ``CHARTER_LOAD_WRITELOG`` — where every write is logged (JSON lines, see below);
* ``CHARTER_LOAD_RPS`` — the target of mixed requests per second, spread over all users;
* ``CHARTER_LOAD_USERS`` — the number of users locust runs (to split the target);
* ``CHARTER_LOAD_TELEMETRY_ROWS`` — rows per telemetry batch (default 50).

The mix, as shares of requests (the class weights; every task is one request except a
pipeline's, which is two at half the pace):

* serving fleets posting telemetry batches — 35 %: every replica of every deployment posts a
  batch every few seconds, around the clock;
* OpenLineage producers — 35 %: every task of every ETL/training job emits START and COMPLETE;
  with hundreds of jobs a day per team, lineage is as chatty as telemetry;
* board members browsing — 20 %: people, session-authenticated, reading dashboards, lists,
  model versions, monitoring, lineage and the audit trail;
* pipelines registering a model version and attaching its evidence — 10 %: training runs
  finish far less often than serving or ETL, but each is a governed, audited write.

**The write log.** Before a write is sent, a ``sent`` line names what it will create (its
natural key: an idempotency key, a lineage event's digest, a model version's
``(model, version)``, an evidence title); after the server accepted it, an ``ok`` line holds
what the server returned (ids). A write whose every attempt failed, or that was interrupted,
has a ``sent`` line only: it is *in doubt* and may be present at most once.  ``verify.py``
checks that every accepted write is present exactly once and nothing else was written.
Retries reuse the same ``Idempotency-Key`` and body, as ``charter_client`` does.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from locust import FastHttpUser, constant_throughput, events, task

FIXTURE = json.loads(open(os.environ["CHARTER_LOAD_FIXTURE"]).read())  # noqa: SIM115
TARGET_RPS = float(os.environ.get("CHARTER_LOAD_RPS", "300"))
USERS = max(1, int(os.environ.get("CHARTER_LOAD_USERS", "60")))
ROWS = int(os.environ.get("CHARTER_LOAD_TELEMETRY_ROWS", "50"))
MAX_TRIES = 5
PER_USER = TARGET_RPS / USERS  # requests per second each user aims at
PRODUCER = "https://charter.example.org/load-producer"
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
NAMESPACE = "load://warehouse"
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')

_log = open(os.environ["CHARTER_LOAD_WRITELOG"], "a", buffering=1)  # noqa: SIM115
_ucs = itertools.cycle(range(len(FIXTURE["use_cases"])))


def _write_log(record: dict[str, Any]) -> None:
    _log.write(json.dumps(record, separators=(",", ":")) + "\n")


@events.quitting.add_listener
def _close_log(environment: Any, **kwargs: Any) -> None:
    _log.flush()


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _digest(event: dict[str, Any]) -> str:
    """What Charter keys a lineage event by (docs/lineage.md, "Idempotent")."""
    canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _telemetry_templates(n: int) -> list[dict[str, Any]]:
    """Rows drawn from the reference's distributions (seed.py), prepared once per process."""
    rng = random.Random(11)
    templates = []
    for _ in range(n):
        ages = [float(round(min(90, max(18, rng.gauss(41, 12))))) for _ in range(ROWS)]
        incomes = [round(rng.lognormvariate(10.4, 0.45), 2) for _ in range(ROWS)]
        regions = [rng.choice(FIXTURE["regions"]) for _ in range(ROWS)]
        tenure = [float(round(min(480, rng.gammavariate(2.0, 30.0)))) for _ in range(ROWS)]
        templates.append(
            {
                "features": {
                    "applicant_age": ages,
                    "income": incomes,
                    "region": regions,
                    "tenure_months": tenure,
                },
                "predictions": [round(rng.random(), 4) for _ in range(ROWS)],
                "latency_ms": [round(rng.gammavariate(3.0, 14.0), 2) for _ in range(ROWS)],
            }
        )
    return templates


TEMPLATES = _telemetry_templates(32)


class _Base(FastHttpUser):
    abstract = True
    network_timeout = 30.0
    connection_timeout = 10.0
    wait_time = constant_throughput(PER_USER)

    def on_start(self) -> None:
        self.uc = FIXTURE["use_cases"][next(_ucs)]

    def _post_write(
        self,
        name: str,
        path: str,
        body: Any,
        token: str,
        sent: dict[str, Any],
        key: str,
    ) -> dict[str, Any] | None:
        """POST a write with retries under one idempotency key; log it; the answer or None."""
        headers = {
            "Authorization": f"Bearer {token}",
            "Idempotency-Key": key,
            "Content-Type": "application/json",
        }
        data = json.dumps(body, separators=(",", ":"))
        _write_log({"phase": "sent", **sent})
        for attempt in range(MAX_TRIES):
            with self.client.post(
                path, data=data, headers=headers, name=name, catch_response=True
            ) as r:
                code = r.status_code or 0
                if code in (200, 201, 202):
                    r.success()
                    answer = r.json()
                    _write_log(
                        {
                            "phase": "ok",
                            **sent,
                            "status": code,
                            "replayed": r.headers.get("Idempotent-Replayed") == "true",
                            "answer": answer,
                        }
                    )
                    return answer
                retry = code in (0, 429, 502, 503, 504) or (
                    code == 409 and r.headers.get("Retry-After")
                )
                r.failure(f"HTTP {code}: {(r.text or '')[:300]}")
                if not retry:
                    _write_log({"phase": "refused", **sent, "status": code})
                    return None
            time.sleep(min(4.0, 0.2 * 2**attempt) * random.random())
        return None


class ServingFleet(_Base):
    """A serving replica posting columnar telemetry batches for its deployment."""

    weight = 35

    @task
    def post_telemetry(self) -> None:
        key = f"load-{uuid.uuid4().hex}"
        body = {**random.choice(TEMPLATES), "idempotency_key": key, "timestamp": _now()}
        dep = self.uc["deployment"]
        self._post_write(
            "POST /api/v1/deployments/[id]/telemetry/",
            f"/api/v1/deployments/{dep}/telemetry/",
            body,
            self.uc["fleet_token"],
            {"t": "telemetry", "deployment": dep, "key": key, "rows": ROWS},
            key,
        )


class LineageProducer(_Base):
    """An ETL scheduler emitting OpenLineage RunEvents: START, then COMPLETE, per run."""

    weight = 35

    def on_start(self) -> None:
        super().on_start()
        self.open_run: dict[str, Any] | None = None

    def _event(self, event_type: str, run: dict[str, Any]) -> dict[str, Any]:
        uc = self.uc["id"]
        inputs = [
            {
                "namespace": NAMESPACE,
                "name": f"uc{uc}.raw_{k}",
                "facets": {
                    "schema": {
                        "_producer": PRODUCER,
                        "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/"
                        "SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
                        "fields": [
                            {"name": "id", "type": "BIGINT"},
                            {"name": "amount", "type": "DOUBLE"},
                        ],
                    }
                },
            }
            for k in run["inputs"]
        ]
        outputs = [{"namespace": NAMESPACE, "name": f"uc{uc}.mart_{run['output']}"}]
        return {
            "eventType": event_type,
            "eventTime": _now(),
            "producer": PRODUCER,
            "schemaURL": RUN_EVENT_SCHEMA,
            "run": {"runId": run["id"]},
            "job": {"namespace": "load-etl", "name": f"uc{uc}.job_{run['job']}"},
            "inputs": inputs,
            "outputs": outputs,
        }

    @task
    def emit(self) -> None:
        if self.open_run is None:
            run = {
                "id": str(uuid.uuid4()),
                "job": random.randrange(20),
                "inputs": random.sample(range(30), 2),
                "output": random.randrange(30),
            }
            event, self.open_run = self._event("START", run), run
        else:
            event, self.open_run = self._event("COMPLETE", self.open_run), None
        digest = _digest(event)
        self._post_write(
            "POST /api/v1/lineage",
            "/api/v1/lineage",
            event,
            self.uc["pipeline_token"],
            {"t": "lineage", "sha256": digest, "run": event["run"]["runId"]},
            f"load-{digest[:32]}",
        )


class TrainingPipeline(_Base):
    """A training job registering a model version with metrics, then attaching evidence."""

    weight = 10
    wait_time = constant_throughput(PER_USER / 2)  # two requests per task

    @task
    def register(self) -> None:
        model = random.choice(self.uc["models"])
        version = f"load-{uuid.uuid4().hex[:16]}"
        auc = round(random.uniform(0.78, 0.93), 4)
        body = {
            "model": model,
            "version": version,
            "metrics": {"auc": auc, "accuracy": round(auc - 0.05, 4)},
            "subgroup_metrics": {
                "age<30": {"recall": round(random.uniform(0.75, 0.9), 4)},
                "age>=30": {"recall": round(random.uniform(0.75, 0.9), 4)},
            },
            "training_datasets": [self.uc["training_dataset_version"]],
            "code_repository": "https://git.example.org/ml/credit",
            "code_commit": uuid.uuid4().hex[:12],
            "parameters": {"max_depth": random.choice([4, 6, 8]), "eta": 0.1},
            "intended_use": "Rank cases for a human reviewer.",
        }
        mv = self._post_write(
            "POST /api/v1/model-versions/",
            "/api/v1/model-versions/",
            body,
            self.uc["pipeline_token"],
            {"t": "model_version", "model": model, "version": version},
            f"load-mv-{version}",
        )
        if mv is None:
            return
        title = f"Validation report {version}"
        sha = hashlib.sha256(title.encode()).hexdigest()
        self._post_write(
            "POST /api/v1/evidence/",
            "/api/v1/evidence/",
            {
                "kind": "validation_report",
                "title": title,
                "model_version": mv["id"],
                "sha256": sha,
                "summary": f"AUC {auc} on the hold-out set.",
                "data": {"auc": auc},
            },
            self.uc["pipeline_token"],
            {"t": "evidence", "model_version": mv["id"], "title": title},
            f"load-ev-{version}",
        )


class BoardMember(_Base):
    """A governance board member in a browser session: pages only, no writes."""

    weight = 20

    def on_start(self) -> None:
        super().on_start()
        member = random.choice(FIXTURE["board"])
        page = self.client.get("/login/", name="GET /login/")
        token = CSRF.search(page.text or "")
        with self.client.post(
            "/login/",
            data=f"username={member['username']}&password={member['password']}"
            f"&csrfmiddlewaretoken={token.group(1) if token else ''}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            name="POST /login/",
            allow_redirects=False,
            catch_response=True,
        ) as r:
            if r.status_code != 302:
                r.failure(f"login failed: HTTP {r.status_code}")

    def _page(self, path: str, name: str) -> None:
        with self.client.get(path, name=name, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")
            elif "/login/" in (r.url or "") or 'name="password"' in (r.text or ""):
                r.failure("not logged in")

    @task(3)
    def dashboard(self) -> None:
        self._page("/", "GET / (dashboard)")

    @task(2)
    def use_cases(self) -> None:
        self._page("/use-cases/", "GET /use-cases/")

    @task(2)
    def use_case(self) -> None:
        uc = random.choice(FIXTURE["use_cases"])["id"]
        self._page(f"/use-cases/{uc}/", "GET /use-cases/[id]/")

    @task(1)
    def models(self) -> None:
        self._page("/models/", "GET /models/")

    @task(3)
    def model_version(self) -> None:
        mv = random.choice(random.choice(FIXTURE["use_cases"])["model_versions"])
        self._page(f"/models/versions/{mv}/", "GET /models/versions/[id]/")

    @task(2)
    def monitoring(self) -> None:
        dep = random.choice(FIXTURE["use_cases"])["deployment"]
        self._page(f"/deployments/{dep}/monitoring/", "GET /deployments/[id]/monitoring/")

    @task(2)
    def lineage(self) -> None:
        mv = random.choice(random.choice(FIXTURE["use_cases"])["model_versions"])
        self._page(f"/lineage/?node=model_version:{mv}&depth=3", "GET /lineage/?node=")

    @task(2)
    def audit_trail(self) -> None:
        self._page("/audit/", "GET /audit/")
