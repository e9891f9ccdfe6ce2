"""Self-host mode, as Reflexio documents it: one customer-owned database, one login.

With DEPLOYMENT_MODE=self-host (or self_host), SELF_HOST_USERNAME and SELF_HOST_PASSWORD name the
only organization, and DATA_DB_URL (or REFLEXIO_DB_URL) is the single database. The organization
is created on first use of a session factory built from the environment (right after the schema
check, once per factory), its password kept only as a scrypt hash; when SELF_HOST_PASSWORD changes,
the next start rotates the hash. The password is never logged, printed or put in an error.
`bootstrap_self_host` can also be called directly (e.g. from a start-up script).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from reflexio_store.errors import ConfigurationError, ConflictError

log = logging.getLogger(__name__)

SELF_HOST_MODES = frozenset({"self-host", "self_host", "selfhost"})


@dataclass(frozen=True)
class SelfHostLogin:
    """The one login of a self-host deployment. The password stays a SecretStr (masked repr)."""

    username: str
    password: SecretStr = field(repr=False)


def self_host_login(
    mode: str | None, username: str | None, password: SecretStr | None
) -> SelfHostLogin | None:
    """The self-host login the environment asks for, None outside self-host mode."""
    if mode is None or mode.strip().lower() not in SELF_HOST_MODES:
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
