"""A local stand-in for the Kubernetes API server: a real HTTP server implementing the Job,
Pod and Secret endpoints the Kubernetes executor uses (create, read, read status, list pods
by label, pod logs, patch, delete with propagation), answering with the API's JSON shapes
and status codes (201, 200, 404 ``Status``, 409 ``AlreadyExists``).

There is no scheduler or kubelet: the test plays them (:meth:`K8sStub.run`,
:meth:`K8sStub.finish`, :meth:`K8sStub.deadline`, :meth:`K8sStub.forget`). No real cluster
is used by the tests.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

JOBS = re.compile(r"^/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?(/status)?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?(/log)?$")
SECRETS = re.compile(r"^/api/v1/namespaces/([^/]+)/secrets(?:/([^/]+))?$")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure" if code >= 400 else "Success",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class K8sStub:
    url: str = ""
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the test plays scheduler and kubelet

    def pod_of(self, ns: str, job: str) -> dict[str, Any]:
        return next(
            p
            for (n, _), p in self.pods.items()
            if n == ns and p["metadata"]["labels"]["job-name"] == job
        )

    def run(self, ns: str, job: str, output: str = "") -> None:
        with self.lock:
            pod = self.pod_of(ns, job)
            pod["status"] = {
                "phase": "Running",
                "startTime": now(),
                "containerStatuses": [self._cstatus(pod, {"running": {"startedAt": now()}})],
            }
            self.jobs[(ns, job)]["status"] = {"active": 1, "startTime": now()}
            self.logs[pod["metadata"]["name"]] = output

    def finish(self, ns: str, job: str, exit_code: int, output: str = "") -> None:
        with self.lock:
            pod = self.pod_of(ns, job)
            name = pod["metadata"]["name"]
            self.logs[name] = self.logs.get(name, "") + output
            terminated = {
                "exitCode": exit_code,
                "reason": "Completed" if exit_code == 0 else "Error",
                "startedAt": now(),
                "finishedAt": now(),
            }
            pod["status"] = {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [self._cstatus(pod, {"terminated": terminated})],
            }
            if exit_code == 0:
                cond = {"type": "Complete", "status": "True", "lastTransitionTime": now()}
                counts = {"succeeded": 1}
            else:
                cond = {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": now(),
                }
                counts = {"failed": 1}
            self.jobs[(ns, job)]["status"] = {"conditions": [cond], **counts, "startTime": now()}

    def deadline(self, ns: str, job: str) -> None:
        """``activeDeadlineSeconds`` passed: the controller kills the pod and fails the Job."""
        with self.lock:
            pod = self.pod_of(ns, job)
            terminated = {"exitCode": 137, "reason": "Error", "signal": 9}
            pod["status"] = {
                "phase": "Failed",
                "containerStatuses": [self._cstatus(pod, {"terminated": terminated})],
            }
            self.jobs[(ns, job)]["status"] = {
                "conditions": [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "DeadlineExceeded",
                        "message": "Job was active longer than specified deadline",
                    }
                ],
                "failed": 1,
            }

    def forget(self, ns: str, job: str) -> None:
        """The Job vanishes behind Charter's back (deleted by someone, a cluster rebuilt)."""
        with self.lock:
            self.jobs.pop((ns, job), None)
            for key in [
                k for k, p in self.pods.items() if p["metadata"]["labels"]["job-name"] == job
            ]:
                self.pods.pop(key)

    @staticmethod
    def _cstatus(pod: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
        container = pod["spec"]["containers"][0]
        return {
            "name": container["name"],
            "image": container["image"],
            "imageID": f"docker-pullable://{container['image']}@sha256:{'0' * 64}",
            "ready": "running" in state,
            "restartCount": 0,
            "started": "running" in state,
            "state": state,
        }

    # -- the API

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple:
        self.seen.append(Seen(method, path, query, body))
        with self.lock:
            if m := JOBS.match(path):
                return self._jobs(method, m.group(1), m.group(2), body)
            if m := PODS.match(path):
                return self._pods(method, m.group(1), m.group(2), bool(m.group(3)), query)
            if m := SECRETS.match(path):
                return self._secrets(method, m.group(1), m.group(2), body)
        return 404, status_body(404, "NotFound", f"the server could not find {path}")

    def _meta(self, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = dict(body.get("metadata") or {})
        meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now())
        meta["resourceVersion"] = str(len(self.seen))
        return meta

    def _jobs(self, method: str, ns: str, name: str | None, body: Any) -> tuple:
        if method == "POST" and name is None:
            name = (body.get("metadata") or {}).get("name", "")
            if body.get("apiVersion") != "batch/v1" or body.get("kind") != "Job" or not name:
                return 422, status_body(422, "Invalid", "Job.batch is invalid")
            if (ns, name) in self.jobs:
                return 409, status_body(
                    409, "AlreadyExists", f'jobs.batch "{name}" already exists', name=name
                )
            job = {**body, "metadata": self._meta(ns, body), "status": {}}
            job["metadata"].setdefault("labels", {})
            self.jobs[(ns, name)] = job
            pod_name = f"{name}-{uuid.uuid4().hex[:5]}"
            template = body["spec"]["template"]
            labels = {
                **(template.get("metadata") or {}).get("labels", {}),
                "job-name": name,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": job["metadata"]["uid"],
            }
            self.pods[(ns, pod_name)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": ns,
                    "labels": labels,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": now(),
                },
                "spec": template["spec"],
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [
                        self._cstatus(
                            {"spec": template["spec"]}, {"waiting": {"reason": "ContainerCreating"}}
                        )
                    ],
                },
            }
            return 201, job
        job = self.jobs.get((ns, name or ""))
        if job is None:
            return 404, status_body(404, "NotFound", f'jobs.batch "{name}" not found', name=name)
        if method == "GET":
            return 200, job
        if method == "DELETE":
            policy = (body or {}).get("propagationPolicy", "Background")
            job["deleteOptions"] = {"propagationPolicy": policy}
            self.jobs.pop((ns, name))
            if policy in ("Foreground", "Background"):  # dependants (pods) go with it
                for key in [
                    k for k, p in self.pods.items() if p["metadata"]["labels"]["job-name"] == name
                ]:
                    self.pods.pop(key)
            for key, secret in list(self.secrets.items()):
                owners = secret["metadata"].get("ownerReferences") or []
                if any(o.get("uid") == job["metadata"]["uid"] for o in owners):
                    self.secrets.pop(key)  # the garbage collector follows ownerReferences
            return 200, status_body(200, "", "", name=name, kind="jobs", group="batch")
        return 405, status_body(405, "MethodNotAllowed", method)

    def _pods(self, method: str, ns: str, name: str | None, log: bool, query: dict) -> tuple:
        if method != "GET":
            return 405, status_body(405, "MethodNotAllowed", method)
        if name is None:
            selector = dict(
                s.split("=", 1) for s in (query.get("labelSelector") or [""])[0].split(",") if s
            )
            items = [
                p
                for (n, _), p in self.pods.items()
                if n == ns and all(p["metadata"]["labels"].get(k) == v for k, v in selector.items())
            ]
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}
        pod = self.pods.get((ns, name))
        if pod is None:
            return 404, status_body(404, "NotFound", f'pods "{name}" not found', name=name)
        if not log:
            return 200, pod
        if pod["status"]["phase"] == "Pending":
            return 400, status_body(
                400, "BadRequest", f'container "train" in pod "{name}" is waiting to start'
            )
        text = self.logs.get(name, "")
        tail = query.get("tailLines")
        if tail:
            text = "\n".join(text.splitlines()[-int(tail[0]) :])
        return 200, text

    def _secrets(self, method: str, ns: str, name: str | None, body: Any) -> tuple:
        if method == "POST" and name is None:
            name = body["metadata"]["name"]
            if (ns, name) in self.secrets:
                return 409, status_body(409, "AlreadyExists", f'secrets "{name}" already exists')
            secret = {**body, "metadata": self._meta(ns, body)}
            self.secrets[(ns, name)] = secret
            return 201, secret
        secret = self.secrets.get((ns, name or ""))
        if secret is None:
            return 404, status_body(404, "NotFound", f'secrets "{name}" not found', name=name)
        if method == "PATCH":
            for key, value in (body.get("metadata") or {}).items():
                secret["metadata"][key] = value
            return 200, secret
        if method == "DELETE":
            self.secrets.pop((ns, name))
            return 200, status_body(200, "", "", name=name, kind="secrets")
        if method == "GET":
            return 200, secret
        return 405, status_body(405, "MethodNotAllowed", method)


def _handler(stub: K8sStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            code, answer = stub.handle(self.command, parts.path, parse_qs(parts.query), body)
            if isinstance(answer, str):
                data, kind = answer.encode(), "text/plain"
            else:
                data, kind = json.dumps(answer).encode(), "application/json"
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    return Handler


@contextmanager
def serve() -> Iterator[K8sStub]:
    stub = K8sStub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()
