"""The Kubernetes executor. No real cluster is used: its manifests are validated against the
batch/v1 Job schema, and its calls go through the official client to a local stub of the API
server (tests/retraining/k8s_stub.py) implementing the Job, Pod and Secret endpoints it uses.

The schema: the ``kubernetes`` client (37.x) ships its models as pydantic classes generated
from the Kubernetes OpenAPI specification (``io.k8s.api.batch.v1.Job`` and everything it
references, unknown fields forbidden); ``V1Job.model_json_schema(by_alias=True)`` is that
schema as JSON Schema, which ``jsonschema`` checks the manifest against, and the manifest must
also load into ``V1Job`` and dump back unchanged.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import jsonschema
import pytest
from kubernetes import client

from tests.retraining import k8s_stub, rig
from tests.retraining.conftest import executors_setting
from workers import executors, retraining
from workers.executors import ExecutorJob, Resources, State
from workers.executors.k8s import KubernetesExecutor
from workers.models import Incident

NS = "ml-jobs"
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")  # resource.Quantity
TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _executor(url: str = "http://127.0.0.1:9", **options: Any) -> KubernetesExecutor:
    options.setdefault("namespace", NS)
    options.setdefault("image", "registry.example.org/charter/retrain:1.4")
    return KubernetesExecutor("k8s", host=url, verify_ssl=False, **options)


def _job(key: str = "charter-rt-0123abcd", **kw: Any) -> ExecutorJob:
    return ExecutorJob(
        key=key,
        name="retraining job #7 of credit-risk",
        command=["{python}", "/app/examples/retrain/train.py"],
        env={"CHARTER_URL": "https://charter.example.org", "CHARTER_JOB": '{"id": 7}'},
        secrets={"CHARTER_TOKEN": "chtr_abcd1234_secret-value"},
        resources=kw.pop("resources", Resources(cpus=4, memory_mb=16384, gpus=2, gpu_type="A100")),
        time_limit_s=kw.pop("time_limit_s", 7200),
        labels={"charter.dev/job-id": "7"},
        **kw,
    )


def test_job_manifest_validates_against_the_batch_v1_schema() -> None:
    ex = _executor(
        node_selector={"pool": "gpu"},
        tolerations=[TOLERATION],
        service_account="charter-jobs",
        image_pull_secrets=["registry"],
    )
    manifest = ex.manifest(_job())
    schema = client.V1Job.model_json_schema(by_alias=True)
    assert schema["additionalProperties"] is False  # unknown fields are errors
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(manifest, schema, cls=jsonschema.Draft202012Validator)
    loaded = client.V1Job.model_validate(manifest)  # and the generated model takes it as is
    assert loaded.model_dump(by_alias=True, exclude_none=True) == manifest

    assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job"
    assert DNS1123.match(manifest["metadata"]["name"]) and len(manifest["metadata"]["name"]) <= 63
    spec = manifest["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 7200
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "A100"}
    assert pod["tolerations"] == [TOLERATION]
    assert pod["serviceAccountName"] == "charter-jobs"
    (container,) = pod["containers"]
    assert container["command"] == ["python", "/app/examples/retrain/train.py"]
    limits = container["resources"]["limits"]
    assert limits == {"cpu": "4", "memory": "16384Mi", "nvidia.com/gpu": "2"}
    assert all(QUANTITY.match(q) for q in limits.values())
    token = next(e for e in container["env"] if e["name"] == "CHARTER_TOKEN")
    assert token == {
        "name": "CHARTER_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": ex.secret_name(_job().key), "key": "CHARTER_TOKEN"}},
    }
    assert "chtr_abcd1234" not in json.dumps(manifest)  # the token is only in the Secret

    broken = json.loads(json.dumps(manifest))
    broken["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # a typo
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)
    broken = json.loads(json.dumps(manifest))
    broken["spec"]["backoffLimit"] = "none"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema, cls=jsonschema.Draft202012Validator)


def test_a_cpu_job_asks_for_no_gpu() -> None:
    manifest = _executor().manifest(_job(resources=Resources(cpus=1, memory_mb=512)))
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert "nodeSelector" not in manifest["spec"]["template"]["spec"]


def test_submit_status_logs_and_success_through_the_api() -> None:
    with k8s_stub.serve() as api:
        ex = _executor(api.url)
        name = ex.submit(_job())
        assert name == "charter-rt-0123abcd"
        calls = [(s.method, s.path) for s in api.seen]
        assert calls[:3] == [
            ("POST", f"/api/v1/namespaces/{NS}/secrets"),
            ("POST", f"/apis/batch/v1/namespaces/{NS}/jobs"),
            ("PATCH", f"/api/v1/namespaces/{NS}/secrets/{ex.secret_name(name)}"),
        ]
        secret = api.secrets[(NS, ex.secret_name(name))]
        assert secret["stringData"] == {"CHARTER_TOKEN": "chtr_abcd1234_secret-value"}
        (owner,) = secret["metadata"]["ownerReferences"]
        assert owner["kind"] == "Job" and owner["uid"] == api.jobs[(NS, name)]["metadata"]["uid"]
        assert ex.submit(_job()) == name  # resubmitted (409 AlreadyExists): the same Job
        assert len(api.jobs) == 1

        st = ex.status(name)
        assert st.state == State.QUEUED and "ContainerCreating" in st.message
        assert ex.logs(name) == ""  # waiting to start: no logs yet
        api.run(NS, name, "epoch 1\nepoch 2\n")
        assert ex.status(name).state == State.RUNNING
        assert ex.logs(name, tail=1) == "epoch 2"
        api.finish(NS, name, 0, "done\n")
        st = ex.status(name)
        assert st.state == State.SUCCEEDED and st.exit_code == 0
        assert ex.logs(name).endswith("done")
        pods = [s for s in api.seen if s.path.endswith("/pods")]
        assert pods[-1].query["labelSelector"] == [f"job-name={name}"]


def test_failure_and_time_limit() -> None:
    with k8s_stub.serve() as api:
        ex = _executor(api.url)
        failing = ex.submit(_job("charter-rt-fails"))
        api.run(NS, failing)
        api.finish(NS, failing, 3, "Traceback: boom\n")
        st = ex.status(failing)
        assert (st.state, st.exit_code, st.message) == (State.FAILED, 3, "exit code 3")
        assert "boom" in ex.logs(failing)

        slow = ex.submit(_job("charter-rt-slow", time_limit_s=60))
        assert api.jobs[(NS, slow)]["spec"]["activeDeadlineSeconds"] == 60
        api.run(NS, slow)
        api.deadline(NS, slow)
        st = ex.status(slow)
        assert st.state == State.FAILED and st.message == "time limit exceeded"


def test_cancel_deletes_the_job_with_propagation() -> None:
    with k8s_stub.serve() as api:
        ex = _executor(api.url)
        name = ex.submit(_job("charter-rt-cancel"))
        api.run(NS, name)
        ex.cancel(name)
        delete = next(s for s in api.seen if s.method == "DELETE" and "/jobs/" in s.path)
        assert delete.body["propagationPolicy"] == "Foreground"
        assert not api.jobs and not api.pods and not api.secrets
        with pytest.raises(executors.JobNotFound):
            ex.status(name)
        ex.cancel(name)  # cancelling what is gone is not an error
        background = _executor(api.url, propagation_policy="Background")
        other = background.submit(_job("charter-rt-cancel-2"))
        background.cancel(other)
        assert api.seen[-2].body["propagationPolicy"] == "Background"


def test_unreachable_api_is_an_executor_error() -> None:
    with pytest.raises(executors.ExecutorError):
        _executor("http://127.0.0.1:9", request_timeout_s=2).status("charter-rt-x")
    with pytest.raises(ValueError):
        _executor(propagation_policy="Orphan")


@pytest.mark.django_db
def test_a_job_kubernetes_loses_becomes_lost_with_an_incident(
    settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with k8s_stub.serve() as api:
        settings.CHARTER_EXECUTORS = executors_setting(
            k8s={
                "class": "workers.executors.k8s.KubernetesExecutor",
                "options": {"host": api.url, "namespace": NS, "image": "retrain:1"},
            }
        )
        w = rig.world(risk_tier="limited", upload=False)
        rig.template(w)
        job = retraining.request_job(rig.SYSTEM, model=w.model, trigger="person", executor="k8s")
        retraining.submit(job.pk)
        job.refresh_from_db()
        assert job.state == "queued" and (NS, job.external_id) in api.jobs
        api.run(NS, job.external_id, "training\n")
        assert retraining.poll(job.pk) == "running"
        api.forget(NS, job.external_id)
        assert retraining.poll(job.pk) == "lost"
        job.refresh_from_db()
        assert job.finished_at is not None and "does not know" in job.message
        incident = Incident.objects.get(details__retraining_job=job.pk)
        assert incident.is_open and "lost" in incident.title
        assert incident.events.filter(kind="opened").exists()

        # a cancelled job the executor then removes ends as cancelled, not lost
        second = retraining.request_job(rig.SYSTEM, model=w.model, trigger="person", executor="k8s")
        retraining.submit(second.pk)
        second.refresh_from_db()
        with django_capture_on_commit_callbacks(execute=True):  # the cancel task, in-process
            retraining.cancel(rig.SYSTEM, second, reason="wrong data")
        for _ in range(20):
            second.refresh_from_db()
            if second.is_final:
                break
            retraining.poll(second.pk)
            time.sleep(0.1)
        assert second.state == "cancelled"
        assert (
            not api.jobs and Incident.objects.filter(details__retraining_job=second.pk).count() == 0
        )
