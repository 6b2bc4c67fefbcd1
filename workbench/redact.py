"""Secrets never shown: redaction of URIs and text before they are shown or recorded.

A URI may carry a credential: an Azure SAS token (``?sv=...&sig=...``), a presigned S3 or
GCS URL (``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token``,
``X-Goog-Signature``), a password (``scheme://user:password@host``). Everything that
shows or records a URI (REST dataset listings, the inserted load cell, lineage manifests,
MLflow tags, error messages) passes it through :func:`redact_uri`; free text that may hold
one (an error message with the offending input) through :func:`redact_text`, which also
hides the value of secret-looking assignments and options (``API_TOKEN=...``,
``--password ...``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .credentials import secret_name

#: What replaces a hidden value.
REDACTED = "REDACTED"
#: Query parameters whose value is (part of) a credential, lower case.
SECRET_QUERY_KEYS = frozenset(
    {
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
        "token",
        "access_token",
        "sas",
        "key",
        "password",
        "secret",
        "code",
    }
)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
#: ``name: value`` and ``'name': value`` (dict and JSON reprs, YAML, logs, HTTP headers);
#: an HTTP authorization scheme before the value is kept.
_KEYED = re.compile(
    r"(?P<q>['\"]?)(?P<name>[A-Za-z_][\w-]*)(?P=q)\s*:[ \t]*"
    r"(?:(?:Bearer|Basic|Token|token|Digest|Negotiate)[ \t]+)?"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\""
    # unquoted: a value, not the first word of a sentence going on ("key 'password': looks
    # like a literal credential", pydantic's "password: Extra inputs are not permitted")
    r"|[^\s,;}\]{\[][^\s,;}\]]*(?![^\s,;}\]])(?![ \t]+[A-Za-z]))"
)
_ASSIGNMENT = re.compile(
    r"(?P<name>[A-Za-z_][\w-]*)(?P<sep>=)(?P<value>[^\s'\",;)]+)"
    r"|(?<=-)(?P<fname>[A-Za-z][\w-]*)(?P<fsep>\s+)(?P<fvalue>[^\s'\",;)-][^\s'\",;)]*)"
)


def _secret_query_key(key: str) -> bool:
    return key.lower() in SECRET_QUERY_KEYS or secret_name(key)


def redact_uri(uri: str) -> str:
    """``uri`` with any password and credential query parameter replaced by REDACTED."""
    if "://" not in uri and "?" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:
        return _URI.sub(REDACTED, uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        if sep:  # user:password@ (a bare name@, such as abfs://container@account, stays)
            netloc = f"{user}:{REDACTED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_query_key(k) for k, _ in pairs):
            query = urlencode(
                [(k, REDACTED if _secret_query_key(k) else v) for k, v in pairs], safe="/:"
            )
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


#: Unquoted values that hold no secret (JSON and Python literals).
_NO_SECRET = frozenset({"null", "true", "false", "None", "True", "False"})
#: Values that name where a secret is, not the secret: shown.
_POINTERS = ("env:", "keyring:", "file:", "$", REDACTED)


def _pointer(value: str) -> bool:
    return value.strip("'\"").startswith(_POINTERS)


def redact_text(text: str) -> str:
    """``text`` with URIs redacted and the values of secret-looking names hidden, in every
    form they are written: ``name=value`` (shell, query strings, Azure connection strings:
    ``AccountKey=``, ``SharedAccessSignature=``), ``--name value``, ``name: value`` (YAML,
    logs, HTTP headers: ``Authorization: Bearer ...``), and quoted keys as dict and JSON
    reprs write them (``{'password': '...'}``, ``"clientSecret": "..."``)."""
    text = _URI.sub(lambda m: redact_uri(m.group()), text)

    def hide(match: re.Match[str]) -> str:
        flag = match.group("fname") is not None
        name = match.group("fname" if flag else "name")
        value = match.group("fvalue" if flag else "value")
        if secret_name(name) and not _pointer(value):
            return f"{name}{match.group('fsep' if flag else 'sep')}{REDACTED}"
        return match.group()

    def hide_keyed(match: re.Match[str]) -> str:
        value = match.group("value")
        if not secret_name(match.group("name")) or _pointer(value) or value in _NO_SECRET:
            return match.group()
        # a quoted value keeps its quotes; an unquoted one under a quoted key (JSON, a
        # dict's repr) gets the key's, so that JSON output stays JSON
        quote = value[0] if value[0] in "'\"" else match.group("q")
        shown = f"{quote}{REDACTED}{quote}"
        return match.group()[: match.start("value") - match.start()] + shown

    text = _KEYED.sub(hide_keyed, text)
    return _ASSIGNMENT.sub(hide, text)


def redact_value(value: Any) -> Any:
    """``value`` (str, list, dict) with every string passed through :func:`redact_text`
    and every literal under a secret-looking key hidden."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list | tuple):
        out_list: list[Any] = []
        for i, item in enumerate(value):
            before = value[i - 1] if i else None
            flag = isinstance(before, str) and before.startswith("-")
            name = before.lstrip("-") if isinstance(before, str) else ""
            if flag and isinstance(item, str) and secret_name(name) and not _pointer(item):
                out_list.append(REDACTED)
            else:
                out_list.append(redact_value(item))
        return type(value)(out_list)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            secret = (
                isinstance(k, str)
                and secret_name(k)
                and isinstance(v, str | int)
                and not isinstance(v, bool)
                and not (isinstance(v, str) and v.startswith(("env:", "keyring:", "file:")))
            )
            out[k] = REDACTED if secret else redact_value(v)
        return out
    return value


class RedactingStream:
    """A text stream that redacts what is written to it (the CLI's stdout and stderr)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.encoding = getattr(stream, "encoding", "utf-8")
        self.errors = getattr(stream, "errors", "strict")

    def write(self, text: str) -> int:
        self._stream.write(redact_text(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return bool(self._stream.isatty())

    def fileno(self) -> int:
        return int(self._stream.fileno())

    def writable(self) -> bool:
        return True
