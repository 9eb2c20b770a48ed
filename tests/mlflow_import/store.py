"""A real MLflow store (SQLite backend, local artifacts) built with the mlflow package.

Three registered models, ten versions, each from a run with parameters, metrics and
logged input datasets (pandas and numpy); aliases and tags; two versions logged as
MLflow 3 models (``models:/m-…``), one whose files live elsewhere (no digest), one that
carries its digest as a tag, one with a NaN metric.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHA_TAGGED = hashlib.sha256(b"fraud v3 weights").hexdigest()


@dataclass
class Store:
    uri: str
    root: Path
    run_ids: dict[tuple[str, int], str] = field(default_factory=dict)
    # dataset name → set of digests logged
    datasets: dict[str, set[str]] = field(default_factory=dict)


def build_store(root: Path) -> Store:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient

    warnings.filterwarnings("ignore", module="mlflow")  # its own deprecation chatter
    uri = f"sqlite:///{root / 'mlflow.db'}"
    store = Store(uri=uri, root=root)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        client = MlflowClient(uri, uri)
        experiment = client.create_experiment("charter-import", artifact_location=str(root / "art"))
        rng = np.random.default_rng(7)

        def frame(n: int, shift: float) -> Any:
            df = pd.DataFrame(
                rng.normal(shift, 1.0, size=(n, 3)), columns=["age", "income", "debt"]
            )
            df["label"] = (df["income"] > shift).astype(float)
            return df

        credit_train = frame(120, 0.0)
        credit_train_v2 = frame(150, 0.3)
        credit_valid = rng.normal(size=(40, 3))
        fraud_train = frame(90, 1.0)

        def log_dataset(ds: Any, context: str) -> None:
            mlflow.log_input(ds, context=context)
            store.datasets.setdefault(ds.name, set()).add(ds.digest)

        plan = [
            # (model, version, params, metrics, train frame, extra)
            (
                "credit-scorer",
                {"lr": 0.1, "depth": 3},
                {"auc": 0.81, "accuracy": 0.77},
                credit_train,
                {},
            ),
            (
                "credit-scorer",
                {"lr": 0.05, "depth": 4},
                {"auc": 0.84, "accuracy": 0.79},
                credit_train,
                {"commit": "1a2b3c4"},
            ),
            (
                "credit-scorer",
                {"lr": 0.05, "depth": 5},
                {"auc": 0.86, "accuracy": 0.80},
                credit_train_v2,
                {"commit": "5d6e7f8", "sklearn": True},
            ),
            (
                "credit-scorer",
                {"lr": 0.02, "depth": 6},
                {"auc": 0.87, "accuracy": float("nan")},
                credit_train_v2,
                {"commit": "9a0b1c2"},
            ),
            ("fraud-detector", {"trees": 100}, {"recall": 0.7}, fraud_train, {}),
            ("fraud-detector", {"trees": 200}, {"recall": 0.74}, fraud_train, {"sklearn": True}),
            (
                "fraud-detector",
                {"trees": 300},
                {"recall": 0.75},
                fraud_train,
                {
                    "tags": {"charter.sha256": SHA_TAGGED, "charter.size_bytes": "4096"},
                    "source": "s3://models/fraud/3",
                },
            ),
            ("churn", {"k": 5}, {"f1": 0.61}, None, {"source": "s3://models/churn/1"}),
            (
                "churn",
                {"k": 7},
                {"f1": 0.63},
                None,
                {"tags": {"charter.version": "2025.10", "owner": "ml-team"}},
            ),
            ("churn", {"k": 9}, {"f1": 0.64}, None, {"description": "tuned k"}),
        ]
        counters: dict[str, int] = {}
        for name, params, metrics, train, extra in plan:
            if name not in counters:
                client.create_registered_model(
                    name,
                    tags={"team": "risk"} if name == "credit-scorer" else None,
                    description=f"{name} (from MLflow)",
                )
                counters[name] = 0
            counters[name] += 1
            number = counters[name]
            with mlflow.start_run(experiment_id=experiment, run_name=f"{name}-{number}") as run:
                mlflow.log_params(params)
                mlflow.log_metrics(metrics)
                if extra.get("commit"):
                    mlflow.set_tag("mlflow.source.git.commit", extra["commit"])
                    mlflow.set_tag("mlflow.source.git.repoURL", "https://git.example.org/ml/models")
                if train is not None:
                    ds = mlflow.data.from_pandas(
                        train,
                        source=f"s3://data/{name}/train-{len(train)}.parquet",
                        name=f"{name}-train",
                        targets="label",
                    )
                    log_dataset(ds, "training")
                if name == "credit-scorer":
                    valid = mlflow.data.from_numpy(
                        credit_valid, source="s3://data/credit/valid.npy", name="credit-valid"
                    )
                    log_dataset(valid, "validation")
                if name == "churn":
                    churn = mlflow.data.from_numpy(
                        np.arange(number * 10, dtype=float).reshape(-1, 2),
                        source=f"s3://data/churn/{number}.npy",
                        name="churn-events",
                    )
                    log_dataset(churn, "eval" if number == 3 else "training")
                store.run_ids[(name, number)] = run.info.run_id
                if extra.get("sklearn"):
                    from sklearn.linear_model import LogisticRegression

                    X = (train if train is not None else credit_train)[["age", "income", "debt"]]
                    y = (train if train is not None else credit_train)["label"]
                    fitted = LogisticRegression().fit(X.to_numpy(), y.to_numpy())
                    info = mlflow.sklearn.log_model(
                        fitted, name="model", pip_requirements=["scikit-learn"]
                    )
                    source = info.model_uri
                else:
                    mlflow.log_text(f"weights of {name} v{number}\n", "model/weights.txt")
                    mlflow.log_text("flavors: {}\n", "model/MLmodel")
                    source = extra.get("source") or f"runs:/{run.info.run_id}/model"
            client.create_model_version(
                name,
                source,
                run_id=run.info.run_id,
                tags=extra.get("tags"),
                description=extra.get("description"),
            )
        client.set_registered_model_alias("credit-scorer", "champion", "3")
        client.set_registered_model_alias("credit-scorer", "challenger", "4")
        client.set_registered_model_alias("churn", "prod", "2")
    finally:
        mlflow.set_tracking_uri(previous)
    return store
