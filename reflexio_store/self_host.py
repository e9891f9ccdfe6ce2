"""Self-host mode, as Reflexio documents it: one customer-owned database, one login.

With DEPLOYMENT_MODE=self-host (or self_host, selfhost), SELF_HOST_USERNAME and SELF_HOST_PASSWORD
name the only organization, and DATA_DB_URL (or REFLEXIO_DB_URL) is the single database. A value
that reads like a misspelt self-host (selfhosted) is a ConfigurationError; any other value is a
deployment that is not self-host. The organization is created on first use of a session factory
built from the environment (right after the schema check, once per factory), its password kept
only as a scrypt hash; when SELF_HOST_PASSWORD changes, the next start rotates the hash. The
password is never logged, printed or put in an error.
`bootstrap_self_host` can also be called directly (e.g. from a start-up script).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from reflexio_store.errors import ConfigurationError, ConflictError

log = logging.getLogger(__name__)

SELF_HOST_MODES = ("self-host", "self_host", "selfhost")
"""DEPLOYMENT_MODE values that turn self-host mode on (self_host is Reflexio's spelling)."""


def _shown_mode(value: object) -> str:
    # A word as given (a typo is recognisable); anything else only by its length: a value that
    # is not a word may be something pasted into the wrong variable.
    if isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,40}", value.strip()):
        return repr(value.strip())
    if isinstance(value, str):
        return f"a {len(value)}-character value"
    return f"a {type(value).__name__}"


def unknown_deployment_mode(value: object) -> str:
    """What is wrong with a DEPLOYMENT_MODE that may be a misspelt self-host mode, and how
    to fix it (no variable name in front: the caller puts it there, pydantic by its location)."""
    return (
        f"{_shown_mode(value)} is not a deployment mode that can be read safely: "
        f"{', '.join(SELF_HOST_MODES)} (in any case) turn on self-host mode (one database, one "
        "login: SELF_HOST_USERNAME / SELF_HOST_PASSWORD); a deployment that is not self-host "
        "names itself in one word that is not about self or host (e.g. platform). Correct the "
        "spelling, or unset DEPLOYMENT_MODE for a deployment that is not self-host"
    )


def _reads_like_self_host(folded: str) -> bool:
    # DEPLOYMENT_MODE is Reflexio's variable and other deployments set their own values
    # (platform, ...), so only a value that names self or host, or is not a word at all
    # (something pasted into the wrong variable), is taken for a mistake.
    letters = re.sub(r"[^a-z]", "", folded)
    return "self" in letters or "host" in letters or not re.fullmatch(r"[a-z0-9_.-]+", folded)


def deployment_mode(value: str | None) -> str | None:
    """DEPLOYMENT_MODE as compared: case and surrounding spaces ignored, None when unset or
    blank. A value that reads like self-host but is none of SELF_HOST_MODES (selfhosted,
    "self host") is a ConfigurationError, never read as "not self-host": the typo would
    silently skip the self-host login. Any other value is a deployment that is not self-host."""
    if value is None:
        return None
    folded = value.strip().lower() if isinstance(value, str) else ""
    if folded == "" and isinstance(value, str):
        return None
    if folded not in SELF_HOST_MODES and (not folded or _reads_like_self_host(folded)):
        raise ConfigurationError(f"DEPLOYMENT_MODE: {unknown_deployment_mode(value)}.")
    return folded


@dataclass(frozen=True)
class SelfHostLogin:
    """The one login of a self-host deployment. The password stays a SecretStr (masked repr)."""

    username: str
    password: SecretStr = field(repr=False)


def self_host_login(
    mode: str | None, username: str | None, password: SecretStr | None
) -> SelfHostLogin | None:
    """The self-host login the environment asks for, None outside self-host mode."""
    if deployment_mode(mode) not in SELF_HOST_MODES:
        return None
    missing = [
        name
        for name, value in (("SELF_HOST_USERNAME", username), ("SELF_HOST_PASSWORD", password))
        if not value or (isinstance(value, SecretStr) and not value.get_secret_value())
    ]
    if missing:
        raise ConfigurationError(
            f"DEPLOYMENT_MODE={mode} needs {' and '.join(missing)}: the login of the one "
            "organization of a self-host deployment."
        )
    assert username is not None and password is not None
    return SelfHostLogin(username.strip(), password)


@dataclass(frozen=True)
class BootstrapResult:
    organization_id: int
    created: bool
    rotated: bool


def bootstrap_self_host(engine: Engine, login: SelfHostLogin) -> BootstrapResult:
    """Create the self-host organization if missing, or rotate its password hash when
    SELF_HOST_PASSWORD no longer matches it. Idempotent; safe when processes start together."""
    from reflexio_store.engines import WRITE_OPTION
    from reflexio_store.security import verify_password_hash
    from reflexio_store.store.organizations import (
        create_organization,
        get_organization_by_login,
        set_password,
    )

    password = login.password.get_secret_value()
    for _attempt in range(2):
        try:
            # Through connect() only: the async schema check lends one connection as an engine.
            with engine.connect() as connection:
                connection.execution_options(**{WRITE_OPTION: True})  # SQLite: BEGIN IMMEDIATE
                with Session(bind=connection, expire_on_commit=False) as session:
                    org = get_organization_by_login(session, login.username)
                    if org is None:
                        org = create_organization(
                            session, login.username, password=password, name=login.username
                        )
                        result = BootstrapResult(org.id, created=True, rotated=False)
                    elif not verify_password_hash(password, org.password_hash):
                        set_password(session, org.id, password)
                        result = BootstrapResult(org.id, created=False, rotated=True)
                    else:
                        result = BootstrapResult(org.id, created=False, rotated=False)
                    session.commit()
        except ConflictError:
            continue  # another process created it first: look again
        if result.created:
            log.info("self-host: created organization %r", login.username)
        elif result.rotated:
            log.info("self-host: SELF_HOST_PASSWORD changed; rotated the password hash")
        return result
    raise ConflictError(
        f"Could not create or find the self-host organization {login.username!r}; try again."
    )
