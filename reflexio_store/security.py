"""Password hashing (scrypt) and token hashing (SHA-256).

Passwords are stored as ``scrypt$n$r$p$salt_b64$hash_b64`` and compared in constant time. Tokens
(API tokens, share links) are random, high-entropy strings, so one SHA-256 is enough to make the
stored value useless to a reader of the database; lookups go by that hash.

Nothing here logs, and no error message or repr ever includes a password or a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from reflexio_store.errors import ValidationError
from reflexio_store.validation import require_text

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_PASSWORD_CHARS = 1024
SCHEME = "scrypt"
# 128 * r * n bytes are needed; leave headroom over the 16 MiB the defaults use.
_MAXMEM = 64 * 1024 * 1024

API_TOKEN_PREFIX = "rxs_"

T = TypeVar("T")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=dklen)


def check_password(password: object, field_name: str = "password") -> str:
    """Validate a new or presented password; the message never echoes the value, and no codec
    error (whose `.object` would be the password) is raised or chained."""
    if isinstance(password, str) and len(password) > MAX_PASSWORD_CHARS:
        raise ValidationError(
            f"{field_name} is longer than {MAX_PASSWORD_CHARS} characters; use a shorter one."
        )
    if isinstance(password, str) and not password:
        raise ValidationError(f"{field_name} must not be empty.")
    return require_text(password, field_name, allow_empty=True)


def hash_password(password: str) -> str:
    """scrypt (n=2**14, r=8, p=1) with a fresh 16-byte salt: ``scrypt$n$r$p$salt$hash``."""
    password = check_password(password)
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password.encode("utf-8"), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"{SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


_DUMMY_SALT = secrets.token_bytes(SALT_BYTES)


def burn_password_check() -> None:
    """Spend one scrypt with the default cost, so that "no such login" or a refused input takes
    as long as a wrong password (no timing oracle on which logins exist)."""
    _scrypt(_DUMMY_SALT, _DUMMY_SALT, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)


def verify_password_hash(password: str, stored: str | None) -> bool:
    """True if `password` matches `stored`. Always spends one scrypt, even when `stored` is
    missing or malformed; the comparison is constant time."""
    parsed = _parse(stored) if stored else None
    if parsed is None:
        burn_password_check()
        return False
    n, r, p, salt, expected = parsed
    try:
        digest = _scrypt(password.encode("utf-8"), salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest, expected)


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except ValueError:
        return None
    # Refuse absurd costs from a tampered row instead of allocating gigabytes.
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return None
    if not salt or not expected:
        return None
    return n, r, p, salt, expected


def new_token(prefix: str = "") -> str:
    """A random URL-safe token with 256 bits of entropy."""
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """SHA-256 hex of a token: what the database stores and looks up by."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_token(token: object, what: str = "token") -> str:
    """A presented token must be non-empty text; the message never echoes it."""
    return require_text(token, what, max_bytes=4096)


@dataclass(frozen=True)
class IssuedSecret(Generic[T]):
    """A newly created row plus its plain token, returned exactly once. The token is kept out
    of repr() so that logging the result does not leak it."""

    record: T
    token: str = field(repr=False)
