"""Accounts: who may use the UI and with which role. Local accounts carry a bcrypt hash;
OIDC users are listed without one (the provider proves who they are, this table says what
they may do). A disabled account's sessions stop at its next request."""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import bcrypt
import sqlalchemy as sa

from reconciliation.gateway import ROLES, store

MIN_PASSWORD_LENGTH = 12
#: bcrypt reads at most 72 bytes; longer passwords are refused rather than cut silently
MAX_PASSWORD_BYTES = 72


class AccountError(ValueError):
    """A bad account command: unknown user, bad role, weak password."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str
    disabled: bool
    has_password: bool


@functools.cache
def _dummy_hash() -> bytes:
    """Compared against when the user does not exist, so both cases take the same time."""
    return bcrypt.hashpw(b"not a password of anyone", bcrypt.gensalt())


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return role


def _hash(password: str) -> str:
    encoded = password.encode()
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise AccountError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    return bcrypt.hashpw(encoded, bcrypt.gensalt()).decode()


def add_user(engine: sa.Engine, name: str, role: str, password: str | None) -> Account:
    """A new account; `password=None` makes an OIDC-only account."""
    _check_role(role)
    name = name.strip()
    if not name:
        raise AccountError("the user name is empty")
    if get(engine, name) is not None:
        raise AccountError(f"user {name!r} exists already (set-role or disable it)")
    hashed = _hash(password) if password is not None else None
    with engine.begin() as connection:
        connection.execute(
            store.users.insert().values(
                name=name, role=role, password_hash=hashed, disabled=False, created_at=time.time()
            )
        )
    return Account(name, role, False, hashed is not None)


def _update(engine: sa.Engine, name: str, **values: object) -> None:
    with engine.begin() as connection:
        changed = connection.execute(
            store.users.update().where(store.users.c.name == name).values(**values)
        ).rowcount
    if not changed:
        raise AccountError(f"no user {name!r}")


def set_role(engine: sa.Engine, name: str, role: str) -> None:
    _update(engine, name, role=_check_role(role))


def disable(engine: sa.Engine, name: str) -> None:
    _update(engine, name, disabled=True)


def get(engine: sa.Engine, name: str) -> Account | None:
    with engine.connect() as connection:
        row = connection.execute(sa.select(store.users).where(store.users.c.name == name)).first()
    if row is None:
        return None
    return Account(row.name, row.role, bool(row.disabled), row.password_hash is not None)


def list_users(engine: sa.Engine) -> list[Account]:
    with engine.connect() as connection:
        rows = connection.execute(sa.select(store.users).order_by(store.users.c.name)).all()
    return [Account(r.name, r.role, bool(r.disabled), r.password_hash is not None) for r in rows]


def verify_password(engine: sa.Engine, name: str, password: str) -> Account | None:
    """The account when the password is right and the account enabled; else None. Always
    one bcrypt comparison, so timing does not tell which user names exist."""
    with engine.connect() as connection:
        row = connection.execute(sa.select(store.users).where(store.users.c.name == name)).first()
    stored = row.password_hash.encode() if row is not None and row.password_hash else _dummy_hash()
    encoded = password.encode()[: MAX_PASSWORD_BYTES + 1]
    matches = len(encoded) <= MAX_PASSWORD_BYTES and bcrypt.checkpw(encoded, stored)
    if row is None or not row.password_hash or row.disabled or not matches:
        return None
    return Account(row.name, row.role, False, True)
