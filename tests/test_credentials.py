from __future__ import annotations

from pathlib import Path

import pytest

from workbench.credentials import find_literal_secrets, is_reference, resolve
from workbench.errors import CredentialError


def test_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WB_TEST_SECRET", "s3cr3t")
    assert resolve("env:WB_TEST_SECRET") == "s3cr3t"
    monkeypatch.delenv("WB_TEST_SECRET")
    with pytest.raises(CredentialError, match="WB_TEST_SECRET is not set"):
        resolve("env:WB_TEST_SECRET")


def test_file_reference(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    assert resolve(f"file:{token}") == "abc"
    with pytest.raises(CredentialError, match="cannot read"):
        resolve(f"file:{tmp_path / 'missing'}")


def test_bad_references() -> None:
    with pytest.raises(CredentialError, match="not a credential reference"):
        resolve("hunter2")
    with pytest.raises(CredentialError, match="SERVICE/USER"):
        resolve("keyring:onlyservice")


def test_literal_secret_detection() -> None:
    data = {
        "a": {"secret_key": "x", "token": "env:T", "port": 1},
        "list": [{"password": "p"}],
        "use_token": True,
        "token_file": "/run/secrets/t",
        "client_secret": 5,
    }
    assert find_literal_secrets(data) == [
        ("a", "secret_key"),
        ("list", 0, "password"),
        ("client_secret",),
    ]
    assert is_reference("keyring:svc/me") and not is_reference("plain")
