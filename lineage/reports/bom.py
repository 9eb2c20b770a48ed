"""A CycloneDX 1.6 ML-BOM for a model version: the model, its datasets and its model card.

cyclonedx-python-lib builds the BOM (components, hashes, dependencies) and
validates the result against the 1.6 JSON schema; the library has no model for
``modelCard`` or component ``data`` yet, so those two parts are added to its
JSON output (both are defined by the 1.6 schema, which the validator enforces).
"""

from __future__ import annotations

import json
from typing import Any

from cyclonedx.model import HashAlgorithm, HashType
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from registry.models import ModelVersion


def _ref(kind: str, pk: int) -> str:
    return f"charter:{kind}:{pk}"


def build_bom(mv: ModelVersion, datasets: list[Any]) -> dict[str, Any]:
    """The BOM as a dict; ``datasets`` are the (visible) dataset versions with their role."""
    bom = Bom()
    model = Component(
        name=mv.model.name,
        version=mv.version,
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=_ref("model_version", mv.pk),
        description=mv.model.description or None,
        hashes=[
            HashType(alg=HashAlgorithm.SHA_256, content=a.sha256)
            for a in mv.artifacts.all()
            if a.sha256
        ],
    )
    bom.metadata.component = model
    data_components = []
    for dv, role in datasets:
        component = Component(
            name=str(dv.dataset.name),
            version=dv.version,
            type=ComponentType.DATA,
            bom_ref=_ref("dataset_version", dv.pk),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=dv.sha256)] if dv.sha256 else [],
        )
        bom.components.add(component)
        data_components.append((component, dv, role))
    bom.register_dependency(model, [c for c, _, _ in data_components])
    doc = json.loads(JsonV1Dot6(bom).output_as_string())

    card: dict[str, Any] = {
        "modelParameters": {
            "task": mv.model.task or "unspecified",
            "datasets": [{"ref": _ref("dataset_version", dv.pk)} for _, dv, _ in data_components],
        },
        "quantitativeAnalysis": {
            "performanceMetrics": [
                {"type": name, "value": str(value)} for name, value in sorted(mv.metrics.items())
            ]
            + [
                {"type": name, "value": str(value), "slice": group}
                for group, values in sorted(mv.subgroup_metrics.items())
                for name, value in sorted(values.items())
            ]
        },
        "considerations": {
            "useCases": [mv.intended_use] if mv.intended_use else [],
            "technicalLimitations": [mv.limitations] if mv.limitations else [],
            "ethicalConsiderations": (
                [{"name": mv.ethical_considerations}] if mv.ethical_considerations else []
            ),
        },
    }
    if mv.out_of_scope_uses:
        card["considerations"]["useCases"].append(f"Out of scope: {mv.out_of_scope_uses}")
    doc["metadata"]["component"]["modelCard"] = card
    by_ref = {c.get("bom-ref"): c for c in doc.get("components", [])}
    for component, dv, role in data_components:
        entry = by_ref[str(component.bom_ref)]
        entry["data"] = [
            {
                "type": "dataset",
                "name": str(dv),
                "description": role,
                "classification": dv.sensitivity,
                "contents": {"url": dv.uri} if dv.uri else {},
            }
        ]
        if not entry["data"][0]["contents"]:
            del entry["data"][0]["contents"]
    return doc


def validate_bom(doc: dict[str, Any]) -> str | None:
    """None when ``doc`` is valid CycloneDX 1.6 JSON; otherwise the first error."""
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc))
    return None if error is None else str(error)
