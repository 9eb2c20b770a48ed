"""The client's signing matches DSSE v1, in-toto Statement v1 and Charter's key-id rule:
Charter's own (pure) verifier accepts its envelopes; local helpers and the offline CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from charter_client import describe_file, signing
from charter_client.cli import main, parse_duration
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from portal import dsse
from portal import keys as portal_keys
from registry.signing import AttestationRefused, check_envelope
from registry.summary import summarize_csv
from tests.client.conftest import CLIENT_SRC


def test_pae_is_dsse_v1() -> None:
    # the example from the DSSE v1 protocol document
    assert signing.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert signing.pae("t", b"") == dsse.pae("t", b"")


def test_key_id_is_sha256_of_the_raw_public_key() -> None:
    private_pem, public_pem = signing.generate_key()
    assert b"BEGIN PRIVATE KEY" in private_pem and b"BEGIN PUBLIC KEY" in public_pem
    public = portal_keys.load_public_pem(public_pem.decode())
    expected = portal_keys.key_id(public)
    assert signing.key_id(public_pem) == expected
    assert signing.key_id(private_pem) == expected  # the public half of a private key
    assert signing.key_id(signing.load_private_key(private_pem)) == expected


def _registered(public_pem: bytes) -> SimpleNamespace:
    return SimpleNamespace(
        key_id=signing.key_id(public_pem),
        public_key_pem=public_pem.decode(),
        revoked_at=None,
        revoked_reason="",
    )


def test_charter_verifies_the_clients_envelope() -> None:
    private_pem, public_pem = signing.generate_key()
    sha = hashlib.sha256(b"model weights").hexdigest()
    env = signing.sign_statement(
        [("model.onnx", sha)], "https://slsa.dev/provenance/v1", {"run": 1}, private_pem
    )
    assert env["payloadType"] == "application/vnd.in-toto+json"
    stmt = json.loads(base64.b64decode(env["payload"]))
    assert stmt == {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "model.onnx", "digest": {"sha256": sha}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"run": 1},
    }
    key = _registered(public_pem)
    checked = check_envelope(
        env,
        sha,
        resolve=lambda kid: [key] if kid == key.key_id else [],
        at=datetime.now(UTC),
    )
    assert checked.key_id == key.key_id and checked.subject_sha256 == sha
    assert signing.verify_envelope(env, public_pem) == stmt

    # a changed payload or another key does not verify, in Charter or here
    forged = dict(env, payload=base64.b64encode(env_payload_with(stmt, "x" * 64)).decode())
    with pytest.raises(AttestationRefused) as exc:
        check_envelope(forged, "x" * 64, resolve=lambda kid: [key], at=datetime.now(UTC))
    assert exc.value.code_name == "bad_signature"
    with pytest.raises(signing.SignatureInvalid):
        signing.verify_envelope(forged, public_pem)
    with pytest.raises(signing.SignatureInvalid):
        signing.verify_envelope(env, Ed25519PrivateKey.generate())


def env_payload_with(stmt: dict, sha: str) -> bytes:
    changed = json.loads(json.dumps(stmt))
    changed["subject"][0]["digest"]["sha256"] = sha
    return json.dumps(changed).encode()


def test_statement_rejects_bad_subjects() -> None:
    with pytest.raises(ValueError, match="64 hex"):
        signing.statement([("a", "abc")], "t", {})
    with pytest.raises(ValueError, match="at least one"):
        signing.statement([], "t", {})


def test_describe_file_matches_charters_summary(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text(
        "id,score,flag,city,empty\n1,0.5,true,Lyon,\n2,7,false,,NA\n3,x,TRUE,Nice,\n" * 50
        + "4,1e3,false,Paris,\n"
    )
    ours = describe_file(data)
    with data.open("rb") as stream:
        theirs = summarize_csv(stream)
    for field in ("sha256", "size_bytes", "row_count", "schema"):
        assert ours[field] == theirs[field], field
    other = tmp_path / "w.bin"
    other.write_bytes(b"\x00" * 10)
    assert describe_file(other) == {
        "sha256": hashlib.sha256(b"\x00" * 10).hexdigest(),
        "size_bytes": 10,
    }
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1\n")
    with pytest.raises(ValueError, match="row 2 has 1 fields"):
        describe_file(bad)


def test_parse_duration() -> None:
    assert parse_duration("1h") == 3600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    assert parse_duration("0.5s") == 0.5
    assert parse_duration("2d") == 172800


def test_cli_key_generate_and_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ci.pem"
    assert main(["key", "generate", "--out", str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    public = tmp_path / "ci.pub.pem"
    assert written["public_key"] == str(public)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert written["key_id"] == signing.key_id(public.read_bytes())
    assert main(["key", "id", str(out)]) == 0
    assert capsys.readouterr().out.strip() == written["key_id"]
    assert main(["key", "generate", "--out", str(out)]) == 4  # never overwrites silently
    assert "exists" in capsys.readouterr().err


def test_cli_usage_errors_and_missing_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["approval", "wait"])
    assert exc.value.code == 64  # never 2, which means "rejected"
    monkeypatch.delenv("CHARTER_TOKEN", raising=False)
    assert main(["approval", "get", "--request", "1", "--url", "http://127.0.0.1:9"]) == 4
    assert "CHARTER_TOKEN" in capsys.readouterr().err


def test_reference_profile_is_computed_locally_when_workers_drift_is_importable(
    tmp_path: Path,
) -> None:
    from charter_client import compute_reference_profile

    data = tmp_path / "ref.csv"
    data.write_text("age,city\n" + "".join(f"{20 + i % 40},c{i % 3}\n" for i in range(200)))
    profile = compute_reference_profile(data, rng=1)
    assert profile["rows"] == 200 and set(profile["features"]) == {"age", "city"}
    # without workers.drift it says why and what to do instead
    code = (
        "import sys; sys.modules['workers'] = None\n"
        "from charter_client import compute_reference_profile, ProfileUnavailable\n"
        f"try:\n    compute_reference_profile({str(data)!r})\n"
        "except ProfileUnavailable as exc:\n    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(CLIENT_SRC)},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert "needs Charter's workers.drift" in out.stdout and "compute" in out.stdout
