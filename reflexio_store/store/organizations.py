"""Organizations (login accounts and their settings) and their API tokens.

Passwords are kept only as scrypt hashes, tokens only as SHA-256 hashes (reflexio_store.security).
The plain API token is returned once, by `create_api_token`; nothing can recover it later.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, joinedload

from reflexio_store.errors import ConflictError, NotFoundError, ValidationError
from reflexio_store.models import ApiToken, Organization
from reflexio_store.security import (
    API_TOKEN_PREFIX,
    IssuedSecret,
    burn_password_check,
    check_password,
    check_token,
    hash_password,
    hash_token,
    new_token,
    verify_password_hash,
)
from reflexio_store.store._operation import fresh, read, write
from reflexio_store.store.crud import rowcount
from reflexio_store.validation import (
    json_object,
    optional_text,
    require_bool,
    require_int_id,
    require_key,
)


def _check_configuration(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    return json_object(value, "configuration_json")


def _org_or_raise(session: Session, org_id: int) -> Organization:
    # Every caller changes the row: lock it (PostgreSQL; SQLite writers are already serialised)
    # so concurrent read-modify-writes such as a configuration merge cannot lose an update.
    org = session.get(Organization, require_int_id(org_id, "org_id"), with_for_update=True)
    if org is None:
        raise NotFoundError(f"No organization with id {org_id}; create it first.")
    return org


def create_organization(
    session: Session,
    login: str,
    password: str | None = None,
    name: str | None = None,
    configuration_json: Mapping[str, Any] | None = None,
) -> Organization:
    """Create an organization. `login` is unique (a duplicate raises ConflictError); the
    password, when given, is stored only as a scrypt hash."""
    login = require_key(login, "login")
    name = optional_text(name, "name")
    config = _check_configuration(configuration_json)
    # Hash before the first statement: on SQLite the write lock is taken by the first statement,
    # so the (deliberately slow) scrypt does not hold it.
    password_hash = hash_password(password) if password is not None else None
    if session.scalar(select(Organization.id).where(Organization.login == login)) is not None:
        raise ConflictError(
            f"An organization with login {login!r} already exists; choose another login."
        )
    org = Organization(
        login=login,
        name=name,
        password_hash=password_hash,
        is_active=True,
        configuration_json=config,
    )
    session.add(org)
    try:
        session.flush()
        raced = False
    except IntegrityError:
        # A concurrent create won the race; nothing of ours is committed (the writer rolls back).
        raced = True
    if raced:
        # Raised outside the except block: the driver error (its parameters hold the password
        # hash and the configuration) must not ride along as __context__.
        raise ConflictError(
            f"An organization with login {login!r} already exists; choose another login."
        )
    return org


def get_organization(session: Session, org_id: int) -> Organization | None:
    return session.get(Organization, require_int_id(org_id, "org_id"))


def get_organization_by_login(session: Session, login: str) -> Organization | None:
    login = require_key(login, "login")
    return session.scalars(select(Organization).where(Organization.login == login)).first()


def verify_password(session: Session, login: str, password: str) -> Organization | None:
    """The active organization whose login and password match, else None.

    Runs one scrypt whether or not the login exists (no timing oracle), and compares hashes in
    constant time. Deactivated organizations and organizations without a password never match.
    """
    try:
        password = check_password(password)
    except ValidationError:
        # A refused password costs one scrypt too, so the refusal says nothing about the login.
        burn_password_check()
        raise
    try:
        # Not text, empty, NUL, invalid Unicode or oversized: no organization can have this
        # login, so it is simply a failed check (at the cost of a real one).
        login = require_key(login, "login")
    except ValidationError:
        burn_password_check()
        return None
    org = session.scalars(select(Organization).where(Organization.login == login)).first()
    ok = verify_password_hash(password, org.password_hash if org is not None else None)
    if org is None or not ok or not org.is_active:
        return None
    return org


def set_password(session: Session, org_id: int, password: str | None) -> Organization:
    """Replace (or, with None, remove) an organization's password."""
    password_hash = hash_password(password) if password is not None else None
    org = _org_or_raise(session, org_id)
    org.password_hash = password_hash
    session.flush()
    return org


def set_organization_active(session: Session, org_id: int, is_active: bool) -> Organization:
    is_active = require_bool(is_active, "is_active")
    org = _org_or_raise(session, org_id)
    org.is_active = is_active
    session.flush()
    return org


def deactivate_organization(session: Session, org_id: int) -> Organization:
    """Mark an organization inactive: its password and API tokens stop working."""
    return set_organization_active(session, org_id, False)


def delete_organization(session: Session, org_id: int) -> bool:
    """Delete an organization; its API tokens go with it (ON DELETE CASCADE)."""
    stmt = delete(Organization).where(Organization.id == require_int_id(org_id, "org_id"))
    return rowcount(session.execute(stmt, execution_options={"synchronize_session": False})) > 0


def get_configuration(session: Session, org_id: int) -> dict[str, Any]:
    """The organization's configuration_json, as Python objects."""
    config = session.scalar(
        select(Organization.configuration_json).where(
            Organization.id == require_int_id(org_id, "org_id")
        )
    )
    if config is None:
        raise NotFoundError(f"No organization with id {org_id}; create it first.")
    return dict(config)


def update_configuration(
    session: Session, org_id: int, configuration_json: Mapping[str, Any], *, merge: bool = False
) -> dict[str, Any]:
    """Replace the configuration (or, with merge=True, update its top-level keys)."""
    if configuration_json is None:
        raise ValidationError("configuration_json must be a mapping; pass {} to clear it.")
    config = _check_configuration(configuration_json)
    org = _org_or_raise(session, org_id)
    org.configuration_json = {**org.configuration_json, **config} if merge else config
    session.flush()
    return dict(org.configuration_json)


def create_api_token(
    session: Session, org_id: int, name: str | None = None
) -> IssuedSecret[ApiToken]:
    """Issue an API token. `.token` is the plain token, returned only here; the database keeps
    its SHA-256 hash. `.record` is the ApiToken row."""
    name = optional_text(name, "name")
    org = _org_or_raise(session, org_id)
    if not org.is_active:
        raise ConflictError(
            f"Organization {org_id} is deactivated; reactivate it before issuing tokens."
        )
    token = new_token(API_TOKEN_PREFIX)
    row = ApiToken(organization_id=org.id, token_hash=hash_token(token), name=name)
    session.add(row)
    session.flush()
    return IssuedSecret(row, token)


def lookup_api_token(session: Session, token: str) -> ApiToken | None:
    """The ApiToken (with `.organization` loaded) for a plain token, or None when the token is
    unknown, revoked, or its organization is deactivated. Records `last_used_at`."""
    token = check_token(token, "API token")
    row = session.scalars(
        select(ApiToken)
        .options(joinedload(ApiToken.organization))
        .where(ApiToken.token_hash == hash_token(token))
    ).first()
    if row is None or not row.organization.is_active:
        return None
    row.last_used_at = datetime.now(UTC)
    session.flush()
    return row


def list_api_tokens(session: Session, org_id: int) -> list[ApiToken]:
    """An organization's tokens (hashes only), newest first."""
    return list(
        session.scalars(
            select(ApiToken)
            .where(ApiToken.organization_id == require_int_id(org_id, "org_id"))
            .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        )
    )


def revoke_api_token(session: Session, token_id: int) -> bool:
    """Delete a token by id; True if it existed."""
    stmt = delete(ApiToken).where(ApiToken.id == require_int_id(token_id, "token_id"))
    return rowcount(session.execute(stmt, execution_options={"synchronize_session": False})) > 0


class OrganizationOperations:
    create_organization = write(create_organization)
    get_organization = read(get_organization)
    get_organization_by_login = read(get_organization_by_login)
    verify_password = fresh(verify_password)
    set_password = write(set_password)
    set_organization_active = write(set_organization_active)
    deactivate_organization = write(deactivate_organization)
    delete_organization = write(delete_organization)
    get_configuration = read(get_configuration)
    update_configuration = write(update_configuration)
    create_api_token = write(create_api_token)
    lookup_api_token = write(lookup_api_token)
    list_api_tokens = read(list_api_tokens)
    revoke_api_token = write(revoke_api_token)
