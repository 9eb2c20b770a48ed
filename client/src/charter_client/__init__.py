"""Charter's Python client: what pipelines use to post datasets, model versions, signed
artifacts, evidence, deployments, telemetry and lineage, and to wait for approvals.

Runtime dependency: ``cryptography`` only (HTTP is ``urllib.request``).

    from charter_client import Client
    charter = Client()  # $CHARTER_URL, $CHARTER_TOKEN
    dv = charter.register_dataset_version(dataset=3, version="2025-10", path="train.csv")
"""

from charter_client.api import (
    FINAL_STATES,
    Client,
    ProfileUnavailable,
    compute_reference_profile,
    describe_file,
)
from charter_client.errors import (
    ApprovalTimeout,
    BadRequest,
    CharterError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    ServerError,
    TooLarge,
    Unauthorized,
)
from charter_client.signing import generate_key, key_id, sign_statement, verify_envelope

__version__ = "0.1.0"

__all__ = [
    "FINAL_STATES",
    "ApprovalTimeout",
    "BadRequest",
    "CharterError",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "NotFound",
    "ProfileUnavailable",
    "ServerError",
    "TooLarge",
    "Unauthorized",
    "__version__",
    "compute_reference_profile",
    "describe_file",
    "generate_key",
    "key_id",
    "sign_statement",
    "verify_envelope",
]
