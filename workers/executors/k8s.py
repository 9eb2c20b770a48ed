"""The Kubernetes executor: one ``batch/v1`` Job per retraining job, through the official
``kubernetes`` client.

The pod asks for ``resources.limits["nvidia.com/gpu"]`` (the device plugin's resource; another
name with ``gpu_resource``), lands where ``node_selector``/``tolerations`` say (a GPU type adds
``gpu_type_label: <type>`` to the selector), and gets the job's token from a Secret created
beside the Job (owned by it, so deleting the Job removes it) through ``secretKeyRef``: the token
is never in the Job's manifest. Status comes from the Job's conditions and its pod's state,
logs from the pod; cancel deletes the Job with ``propagationPolicy`` (Foreground by default) so
its pods go with it. ``activeDeadlineSeconds`` enforces the time limit.
"""

from __future__ import annotations

import re
from typing import Any

from workers.executors.base import (
    Executor,
    ExecutorError,
    ExecutorJob,
    JobNotFound,
    JobStatus,
    State,
)

NAME = re.compile(r"[^a-z0-9-]+")
MANAGED_BY = "charter"


def dns_name(value: str, limit: int = 63) -> str:
    """A DNS-1123 label from any text (lowercase, digits and '-', at most 63 characters)."""
    name = NAME.sub("-", value.lower()).strip("-")[:limit].strip("-")
    return name or "charter-job"


def _label_value(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:63].strip("-_.")


class KubernetesExecutor(Executor):
    """Options: ``namespace``; ``image`` (the default when a job names none); ``kubeconfig`` and
    ``context``, or ``in_cluster: true``, or ``host`` with ``token``/``verify_ssl``/``ca_cert``;
    ``node_selector``, ``tolerations``, ``service_account``, ``image_pull_secrets``,
    ``gpu_resource`` (default ``nvidia.com/gpu``), ``gpu_type_label`` (default
    ``nvidia.com/gpu.product``), ``ttl_seconds_after_finished``, ``propagation_policy``
    (``Foreground`` or ``Background``), ``labels``, ``python`` (what ``{python}`` stands for in
    the container, default ``python``)."""

    kind = "Kubernetes"

    def __init__(
        self,
        name: str,
        *,
        namespace: str = "default",
        image: str = "",
        kubeconfig: str | None = None,
        context: str | None = None,
        in_cluster: bool = False,
        host: str | None = None,
        token: str | None = None,
        verify_ssl: bool = True,
        ca_cert: str | None = None,
        node_selector: dict[str, str] | None = None,
        tolerations: list[dict[str, Any]] | None = None,
        service_account: str = "",
        image_pull_secrets: list[str] | None = None,
        gpu_resource: str = "nvidia.com/gpu",
        gpu_type_label: str = "nvidia.com/gpu.product",
        ttl_seconds_after_finished: int | None = 86400,
        propagation_policy: str = "Foreground",
        labels: dict[str, str] | None = None,
        python: str = "python",
        request_timeout_s: float = 30.0,
    ) -> None:
        if propagation_policy not in ("Foreground", "Background"):
            raise ValueError("propagation_policy must be 'Foreground' or 'Background'")
        if tolerations is not None and not all(isinstance(t, dict) for t in tolerations):
            raise ValueError("tolerations must be a list of objects")
        super().__init__(name, namespace=namespace, image=image, host=host)
        self.namespace = namespace
        self.image = image
        self.kubeconfig, self.context, self.in_cluster = kubeconfig, context, in_cluster
        self.host, self.token, self.verify_ssl, self.ca_cert = host, token, verify_ssl, ca_cert
        self.node_selector = dict(node_selector or {})
        self.tolerations = list(tolerations or [])
        self.service_account = service_account
        self.image_pull_secrets = list(image_pull_secrets or [])
        self.gpu_resource = gpu_resource
        self.gpu_type_label = gpu_type_label
        self.ttl = ttl_seconds_after_finished
        self.propagation_policy = propagation_policy
        self.labels = dict(labels or {})
        self.python = python
        self.request_timeout_s = request_timeout_s
        self._api: Any = None

    # -- the client

    def api_client(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            cfg = client.Configuration()
            try:
                if self.host:
                    cfg.host = self.host
                    cfg.verify_ssl = self.verify_ssl
                    if self.ca_cert:
                        cfg.ssl_ca_cert = self.ca_cert
                    if self.token:
                        cfg.api_key = {"authorization": f"Bearer {self.token}"}
                elif self.in_cluster:
                    config.load_incluster_config(client_configuration=cfg)
                else:
                    config.load_kube_config(
                        config_file=self.kubeconfig, context=self.context, client_configuration=cfg
                    )
            except config.ConfigException as exc:
                raise ExecutorError(f"Kubernetes configuration: {exc}") from exc
            self._api = client.ApiClient(cfg)
        return self._api

    def batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self.api_client())

    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client())

    def check(self) -> list[str]:
        if not (self.host or self.in_cluster or self.kubeconfig):
            from pathlib import Path

            if not (Path.home() / ".kube" / "config").exists():
                return ["no host, in_cluster or kubeconfig given, and no ~/.kube/config"]
        return []

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "namespace": self.namespace}

    # -- manifests

    def job_name(self, key: str) -> str:
        return dns_name(key)

    def secret_name(self, key: str) -> str:
        return dns_name(f"{self.job_name(key)}-secrets")

    def manifest(self, job: ExecutorJob) -> dict[str, Any]:
        """The ``batch/v1`` Job for ``job`` (a plain dict, as sent to the API server)."""
        name = self.job_name(job.key)
        labels = {
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "app.kubernetes.io/name": "charter-retraining",
            "charter.dev/job-key": _label_value(job.key),
            **{k: _label_value(v) for k, v in {**self.labels, **job.labels}.items()},
        }
        r = job.resources
        requests = {"cpu": str(max(1, r.cpus)), "memory": f"{max(1, r.memory_mb)}Mi"}
        limits = dict(requests)
        node_selector = dict(self.node_selector)
        if r.gpus:
            limits[self.gpu_resource] = str(r.gpus)
            if r.gpu_type and self.gpu_type_label:
                node_selector[self.gpu_type_label] = r.gpu_type
        env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(job.env.items())]
        env += [
            {
                "name": k,
                "valueFrom": {"secretKeyRef": {"name": self.secret_name(job.key), "key": k}},
            }
            for k in sorted(job.secrets)
        ]
        command = [part.replace("{python}", self.python) for part in job.command]
        container: dict[str, Any] = {
            "name": "train",
            "image": job.image or self.image,
            "command": command,
            "env": env,
            "resources": {"requests": requests, "limits": limits},
        }
        pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
        if node_selector:
            pod_spec["nodeSelector"] = node_selector
        if self.tolerations:
            pod_spec["tolerations"] = self.tolerations
        if self.service_account:
            pod_spec["serviceAccountName"] = self.service_account
        if self.image_pull_secrets:
            pod_spec["imagePullSecrets"] = [{"name": s} for s in self.image_pull_secrets]
        spec: dict[str, Any] = {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(job.time_limit_s),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        }
        if self.ttl is not None:
            spec["ttlSecondsAfterFinished"] = int(self.ttl)
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": labels,
                "annotations": {"charter.dev/job-name": job.name[:250]},
            },
            "spec": spec,
        }

    def secret_manifest(self, job: ExecutorJob) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": self.secret_name(job.key),
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/managed-by": MANAGED_BY},
            },
            "stringData": dict(job.secrets),
        }

    # -- the interface

    def _error(self, exc: Exception, what: str) -> ExecutorError:
        status = getattr(exc, "status", None)
        if status == 404:
            return JobNotFound(f"Kubernetes does not know {what}")
        reason = getattr(exc, "reason", "") or str(exc)
        body = getattr(exc, "body", "") or ""
        return ExecutorError(f"Kubernetes API ({status or 'no answer'}): {reason} {body}".strip())

    def submit(self, job: ExecutorJob) -> str:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        if not (job.image or self.image):
            raise ExecutorError("no container image: give one in the job's spec or options")
        name = self.job_name(job.key)
        batch, core = self.batch(), self.core()
        timeout = self.request_timeout_s
        try:
            if job.secrets:
                try:
                    core.create_namespaced_secret(
                        self.namespace, self.secret_manifest(job), _request_timeout=timeout
                    )
                except ApiException as exc:
                    if exc.status != 409:  # 409: there from an earlier try
                        raise
            try:
                created = batch.create_namespaced_job(
                    self.namespace, self.manifest(job), _request_timeout=timeout
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
                created = batch.read_namespaced_job(name, self.namespace, _request_timeout=timeout)
            if job.secrets:
                owner = {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": name,
                    "uid": created.metadata.uid,
                    "blockOwnerDeletion": False,
                }
                core.patch_namespaced_secret(
                    self.secret_name(job.key),
                    self.namespace,
                    {"metadata": {"ownerReferences": [owner]}},
                    _request_timeout=timeout,
                )
        except ApiException as exc:
            raise self._error(exc, f"job {name}") from exc
        except HTTPError as exc:
            raise ExecutorError(f"cannot reach Kubernetes: {exc}") from exc
        return name

    def _pods(self, name: str) -> list[Any]:
        pods = self.core().list_namespaced_pod(
            self.namespace,
            label_selector=f"job-name={name}",
            _request_timeout=self.request_timeout_s,
        )
        return sorted(
            pods.items,
            key=lambda p: (p.metadata.creation_timestamp is None, p.metadata.creation_timestamp),
        )

    @staticmethod
    def _terminated(pod: Any) -> Any:
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            if cs.state and cs.state.terminated:
                return cs.state.terminated
        return None

    @staticmethod
    def _waiting(pod: Any) -> str:
        for cs in (pod.status.container_statuses or []) if pod.status else []:
            if cs.state and cs.state.waiting and cs.state.waiting.reason:
                waiting = cs.state.waiting
                return f"{waiting.reason}: {waiting.message or ''}".strip(": ")
        return ""

    def status(self, external_id: str) -> JobStatus:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            job = self.batch().read_namespaced_job_status(
                external_id, self.namespace, _request_timeout=self.request_timeout_s
            )
            pods = self._pods(external_id)
        except ApiException as exc:
            raise self._error(exc, f"job {external_id}") from exc
        except HTTPError as exc:
            raise ExecutorError(f"cannot reach Kubernetes: {exc}") from exc
        pod = pods[-1] if pods else None
        terminated = self._terminated(pod) if pod is not None else None
        exit_code = terminated.exit_code if terminated is not None else None
        if job.metadata.deletion_timestamp is not None:
            return JobStatus(State.CANCELLED, exit_code=exit_code, message="the Job is deleted")
        conditions = (
            {c.type: c for c in (job.status.conditions or []) if c.status == "True"}
            if job.status
            else {}
        )
        if "Complete" in conditions:
            return JobStatus(State.SUCCEEDED, exit_code=exit_code or 0, progress=1.0)
        if "Failed" in conditions:
            cond = conditions["Failed"]
            if cond.reason == "DeadlineExceeded":
                message = "time limit exceeded"
            elif exit_code is not None:
                message = f"exit code {exit_code}"
            else:
                message = cond.message or cond.reason or "failed"
            return JobStatus(State.FAILED, exit_code=exit_code, message=message)
        if "Suspended" in conditions:
            return JobStatus(State.QUEUED, message="suspended")
        if pod is not None and pod.status is not None:
            if pod.status.phase == "Running":
                return JobStatus(State.RUNNING)
            if pod.status.phase in ("Succeeded", "Failed"):  # the Job controller lags
                return JobStatus(State.RUNNING, message=f"pod {pod.status.phase.lower()}")
            return JobStatus(State.QUEUED, message=self._waiting(pod) or "pod pending")
        return JobStatus(State.QUEUED, message="no pod yet")

    def cancel(self, external_id: str) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            self.batch().delete_namespaced_job(
                external_id,
                self.namespace,
                body=client.V1DeleteOptions(propagation_policy=self.propagation_policy),
                _request_timeout=self.request_timeout_s,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise self._error(exc, f"job {external_id}") from exc
        try:  # owned by the Job (garbage-collected), but do not wait for the collector
            self.core().delete_namespaced_secret(
                dns_name(f"{external_id}-secrets"),
                self.namespace,
                _request_timeout=self.request_timeout_s,
            )
        except ApiException as exc:
            if exc.status != 404:
                raise self._error(exc, f"the secret of job {external_id}") from exc

    def logs(self, external_id: str, tail: int = 200) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            pods = self._pods(external_id)
            if not pods:
                self.batch().read_namespaced_job(
                    external_id, self.namespace, _request_timeout=self.request_timeout_s
                )
                return ""
            return self.core().read_namespaced_pod_log(
                pods[-1].metadata.name,
                self.namespace,
                tail_lines=tail,
                _request_timeout=self.request_timeout_s,
            )
        except ApiException as exc:
            if exc.status == 400:  # the container has not started: no logs yet
                return ""
            raise self._error(exc, f"job {external_id}") from exc
