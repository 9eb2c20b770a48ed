"""A high-risk use case with a version that satisfies its default production policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from approvals import services as approvals
from portal import roles
from portal.permissions import Access
from portal.services import grant_access
from registry import services
from registry.signing import sign_artifact_as_portal
from tests import factories as f

SUBGROUPS = {"age<30": {"recall": 0.84, "auc": 0.88}, "age>=30": {"recall": 0.86, "auc": 0.9}}
CARD = {
    "intended_use": "Rank applications for a human reviewer.",
    "out_of_scope_uses": "Automated refusals.",
    "limitations": "Thin credit files.",
    "ethical_considerations": "Subgroup recall is monitored.",
}


@dataclass
class Rig:
    uc: Any
    mv: Any
    artifact: Any
    contributor: Any
    board1: Any
    board2: Any
    risk: Any
    auditor: Any

    def access(self, who: str) -> Access:
        return Access(user=getattr(self, who))

    def request(self, environment: str = "production", mv: Any = None) -> Any:
        return approvals.create_request(
            self.access("contributor"), model_version=mv or self.mv, environment=environment
        )

    def approve_all(self, req: Any) -> Any:
        for who, role in (
            ("board1", roles.BOARD),
            ("board2", roles.BOARD),
            ("risk", "risk officer"),
        ):
            approvals.decide(self.access(who), req, verdict="approve", comment="ok", role=role)
        req.refresh_from_db()
        return req


def make_version(uc: Any, contributor: Any, *, sign: bool = True, **extra: Any) -> tuple[Any, Any]:
    access = Access(user=contributor)
    dv = f.dataset_version(f.dataset(uc), quality_summary={"columns": {"age": {"mean": 41}}})
    model = extra.pop("model", None) or services.create_model(access, use_case=uc, name="scorer")
    data = {"metrics": {"auc": 0.9, "recall": 0.85}, "subgroup_metrics": SUBGROUPS, **CARD}
    data.update(extra)
    mv = services.register_model_version(
        access, model=model, version=f"1.{f.next_n()}", training_datasets=[dv], **data
    )
    for kind in ("bias_evaluation", "validation_report"):
        services.add_evidence(
            access,
            model_version=mv,
            kind=kind,
            title=f"{kind} {mv.version}",
            sha256=f.digest(f"{kind} {mv.pk}"),
        )
    artifact = services.add_artifact(
        access,
        model_version=mv,
        name="model.onnx",
        uri=f"s3://m/{mv.pk}",
        sha256=f.digest(f"artifact {mv.pk}"),
        size_bytes=10,
    )
    if sign:
        sign_artifact_as_portal(access, artifact, "https://slsa.dev/provenance/v1", {"run": 1})
    return mv, artifact


def build_rig() -> Rig:
    uc = f.use_case(name=f"Lending {f.next_n()}", risk_tier="high")
    contributor = f.user(roles=(roles.CONTRIBUTOR,))
    grant_access(Access.system(), uc, contributor, "contribute")
    mv, artifact = make_version(uc, contributor)
    return Rig(
        uc,
        mv,
        artifact,
        contributor,
        f.user(roles=(roles.BOARD,)),
        f.user(roles=(roles.BOARD,)),
        f.user(roles=(roles.RISK_OFFICER,)),
        f.user(roles=(roles.AUDITOR,)),
    )
