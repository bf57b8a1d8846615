"""Signing secrets: made here, kept encrypted at rest.

The server has to sign every delivery, so it needs each secret itself; a hash (as for passwords) would
not do. The secrets are therefore stored encrypted (Fernet: AES-128-CBC with an HMAC-SHA256 tag) under
a key derived from WEBHOOK_SECRETS_KEYS (default: SECRET_KEY) with HKDF and a purpose label of its own.
What that protects: a copy of the database alone (a backup, a read-only SQL injection, a replica) does
not give away anyone's secret. What it does not: whoever has both the database and the key (the
server's environment) can sign as us. Several keys may be listed: the first encrypts, all decrypt, so
the key can be rotated by putting a new one in front (and re-saving each secret, e.g. by rotating it).
"""

from __future__ import annotations

import base64
import secrets
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

SECRET_PREFIX = "whsec_"
# Standard Webhooks asks for 24 to 64 random bytes.
SECRET_BYTES = 32
_PURPOSE = b"order-scheduler/webhook-signing-secrets/v1"


class SecretUnreadable(RuntimeError):
    """A stored secret cannot be decrypted with any configured key (the key was changed)."""


def new_signing_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def _fernet_key(material: str) -> bytes:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(material.encode())
    return base64.urlsafe_b64encode(derived)


@cache
def _cipher(materials: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_fernet_key(m)) for m in materials])


def _configured_cipher() -> MultiFernet:
    materials = tuple(k for k in getattr(settings, "WEBHOOK_SECRETS_KEYS", []) if k) or (settings.SECRET_KEY,)
    return _cipher(materials)


def encrypt_secret(secret: str) -> str:
    return _configured_cipher().encrypt(secret.encode()).decode("ascii")


def decrypt_secret(token: str) -> str:
    try:
        return _configured_cipher().decrypt(token.encode("ascii")).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("a webhook signing secret cannot be decrypted with WEBHOOK_SECRETS_KEYS") from exc
