"""workbench.redact: a secret planted in every form it is written in is hidden; the names
of where secrets live (references, paths, variables) and ordinary text are kept."""

from __future__ import annotations

import json

import pytest

from workbench.credentials import secret_name
from workbench.redact import REDACTED, redact_text, redact_uri, redact_value

MARKER = "Zq7planted9secret"

FORMS = {
    "nested dict repr (a launch body's value)": f"{{'profile': {{'password': '{MARKER}'}}}}",
    "JSON, camelCase": json.dumps({"clientSecret": MARKER, "name": "x"}),
    "JSON, sasToken": json.dumps({"sasToken": MARKER}),
    "key: value": f"sessionToken: {MARKER}",
    "PascalCase key: value": f"SecretAccessKey: {MARKER}, region: eu",
    "two on a line": f"sessionToken: {MARKER}; SecretAccessKey: {MARKER}",
    "YAML in a message": f"storage_options:\n  token: {MARKER}\n",
    "name=value": f"AWS_SECRET_ACCESS_KEY={MARKER} other=1",
    "camelCase name=value": f"sessionToken={MARKER}",
    "flag value": f"--api-key {MARKER} --name x",
    "Authorization: Bearer": f"Authorization: Bearer {MARKER}",
    "Authorization: token, in a dict": f"{{'Authorization': 'token {MARKER}'}}",
    "Azure AccountKey": f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={MARKER}==;x=y",
    "Azure SharedAccessSignature": (
        f"BlobEndpoint=https://a.blob.core.windows.net/;SharedAccessSignature=sv=2020&sig={MARKER}"
    ),
    "presigned S3 URL in an exception": (
        f"FileNotFoundError: https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F{MARKER}"
        f"&X-Amz-Signature={MARKER}"
    ),
    "GCS signed URL": f"403 https://storage.googleapis.com/b/o?X-Goog-Signature={MARKER}",
    "SAS URL": f"https://a.blob.core.windows.net/c/b?sv=2020&sig={MARKER}",
    "password in a URI": f"postgresql://user:{MARKER}@db:5432/x",
    "dict repr with a byte-like quote": f'{{"password": "a\\"{MARKER}"}}',
}


@pytest.mark.parametrize("text", list(FORMS.values()), ids=list(FORMS))
def test_a_secret_in_every_form_is_hidden(text: str) -> None:
    shown = redact_text(text)
    assert MARKER not in shown, shown
    assert REDACTED in shown, shown


KEPT = [
    "password: Extra inputs are not permitted",
    "profile 'p': key 'options.password': looks like a literal credential",
    "token: env:MY_TOKEN",
    "password_file: /home/me/.pw",
    "{'token': 'keyring:svc/me'}",
    "error: the scheduler at tls://10.0.0.1:8786 does not answer; reason: refused",
    "profile 'gpu': key 'options.n_workers': must be at least 0",
    "abfs://container@account.dfs.core.windows.net/path",
    "Authorization header missing",
]


@pytest.mark.parametrize("text", KEPT)
def test_references_and_ordinary_text_are_kept(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "api_key",
        "--token",
        "clientSecret",
        "sasToken",
        "sessionToken",
        "SecretAccessKey",
        "AccountKey",
        "SharedAccessSignature",
        "Authorization",
        "sig",
    ],
)
def test_secret_names_in_every_case(name: str) -> None:
    assert secret_name(name)


@pytest.mark.parametrize(
    "name", ["token_file", "password_env", "secret_name", "n_workers", "signal", "tokenizer"]
)
def test_names_that_hold_no_secret(name: str) -> None:
    assert not secret_name(name)


def test_json_stays_json() -> None:
    data = {"password": None, "token": 1234567, "auth": {"clientSecret": True}, "n": 1}
    shown = json.loads(redact_text(json.dumps(data, indent=1)))
    assert shown == {"password": None, "token": REDACTED, "auth": {"clientSecret": True}, "n": 1}


def test_nested_values_and_flag_lists() -> None:
    value = {"profile": {"clientSecret": MARKER, "n": 1}, "args": ["--password", MARKER]}
    shown = redact_value(value)
    assert MARKER not in json.dumps(shown)
    assert shown["profile"]["n"] == 1
    assert redact_uri("s3://bucket/key") == "s3://bucket/key"
