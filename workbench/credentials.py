"""Credentials are referenced, never stored.

Profiles, catalogs and notebooks hold a *reference* that is resolved at the moment
it is needed, in the process that needs it:

``env:NAME``                the value of environment variable NAME
``keyring:SERVICE/USER``    a secret in the system keyring (``pip install keyring``)
``file:PATH``               the contents of a file (e.g. a token mounted by the platform)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .errors import CredentialError

REFERENCE = re.compile(r"^(env|keyring|file):(.+)$")
#: Keys whose values must be references, never literal secrets.
SECRET_KEY = re.compile(
    r"(^|[_-])(pass(word|wd)?|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|"
    r"credentials?|account[_-]?key|connection[_-]?string|sas|sig|signature|authorization|"
    r"cookie)([_-]|$)",
    re.IGNORECASE,
)
#: Keys that name where a secret lives (a path, a variable), not the secret itself.
POINTER_KEY = re.compile(r"[_-](file|path|env|var|name|dir)$", re.IGNORECASE)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def secret_name(name: str) -> bool:
    """Whether a key or option named ``name`` holds a secret: ``password``, ``api_key``,
    ``--token``, and camelCase or PascalCase ones as cloud SDKs write them (``clientSecret``,
    ``sasToken``, ``sessionToken``, ``SecretAccessKey``, ``AccountKey``,
    ``SharedAccessSignature``); not one that says where a secret is (``token_file``,
    ``password_env``)."""
    words = _CAMEL.sub("_", name.strip("-"))
    return SECRET_KEY.search(words) is not None and POINTER_KEY.search(words) is None


def is_reference(value: object) -> bool:
    return isinstance(value, str) and REFERENCE.match(value) is not None


def find_literal_secrets(
    data: Any, prefix: tuple[str | int, ...] = ()
) -> list[tuple[str | int, ...]]:
    """Paths of keys that look like credentials but hold a literal value, not a reference."""
    found: list[tuple[str | int, ...]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = (*prefix, key)
            if (
                isinstance(key, str)
                and secret_name(key)
                and isinstance(value, str | int)
                and not isinstance(value, bool)
                and value != ""
                and not is_reference(value)
            ):
                found.append(path)
            else:
                found.extend(find_literal_secrets(value, path))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            found.extend(find_literal_secrets(value, (*prefix, i)))
    return found


def resolve(reference: str) -> str:
    """The secret a reference points to. Raises CredentialError naming the reference."""
    match = REFERENCE.match(reference)
    if match is None:
        raise CredentialError(
            f"{reference!r} is not a credential reference; use env:NAME, keyring:SERVICE/USER "
            "or file:PATH"
        )
    kind, target = match.groups()
    if kind == "env":
        value = os.environ.get(target)
        if value is None:
            raise CredentialError(
                f"credential env:{target}: environment variable {target} is not set"
            )
        return value
    if kind == "file":
        path = Path(target).expanduser()
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise CredentialError(f"credential file:{target}: cannot read {path}: {exc}") from exc
    service, sep, user = target.partition("/")
    if not sep or not service or not user:
        raise CredentialError(f"credential keyring:{target}: expected keyring:SERVICE/USER")
    try:
        import keyring
    except ImportError as exc:
        raise CredentialError(
            f"credential keyring:{target}: the keyring package is not installed "
            "(pip install keyring)"
        ) from exc
    value = keyring.get_password(service, user)
    if value is None:
        raise CredentialError(
            f"credential keyring:{target}: no secret stored for {user} in {service}"
        )
    return str(value)
