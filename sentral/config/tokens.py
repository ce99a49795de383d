"""API tokens: how a clinic platform's software gets into the web API without a staff password.

A token is made once, shown once (``sentral token add``) and stored only as its SHA-256: a
copy of the database, or of a backup, holds no working token. Each token belongs to one clinic
and sees only that clinic. Tokens are random (32 bytes), so a plain hash is enough: there is
nothing to guess that a slow hash would protect.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from sentral.config.db import StoreError, writing
from sentral.config.models import ApiToken, Clinic

TOKEN_PREFIX = "sntl_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """A stored token, without the token itself."""

    domain: str
    name: str
    created_at: float


def token_hash(token: str) -> str:
    """What is stored of ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token, recognisable by its prefix when it turns up somewhere it should not."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def validate_token_name(name: str) -> str:
    """A token's name: letters, digits, dot, dash and underscore, up to 64."""
    name = name.strip()
    if not _NAME.match(name):
        raise StoreError(
            f"token name {name!r}: use letters, digits, '.', '-' and '_' (up to 64), starting with a letter or digit"
        )
    return name


class TokenStore:
    """The API tokens of every clinic."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._writer = writing(engine)

    def add(self, domain: str, name: str) -> tuple[TokenEntry, str]:
        """Make a token called ``name`` for the clinic ``domain``; the entry and the token itself,
        which is never available again."""
        name = validate_token_name(name)
        token = new_token()
        now = time.time()
        with self._writer.begin() as connection:
            clinic_id = connection.execute(select(Clinic.id).where(Clinic.domain == domain)).scalar()
            if clinic_id is None:
                raise StoreError(f"there is no clinic {domain}")
            try:
                connection.execute(
                    insert(ApiToken).values(
                        clinic_id=clinic_id, name=name, token_hash=token_hash(token), created_at=now
                    )
                )
            except IntegrityError:
                raise StoreError(
                    f"{domain} already has a token called {name}; remove it first or choose another name"
                ) from None
        return TokenEntry(domain, name, now), token

    def list(self, domain: str | None = None) -> builtins.list[TokenEntry]:
        """The tokens of ``domain`` (every clinic's when None), by clinic and name."""
        query = (
            select(Clinic.domain, ApiToken.name, ApiToken.created_at)
            .join(Clinic, Clinic.id == ApiToken.clinic_id)
            .order_by(Clinic.domain, ApiToken.name)
        )
        if domain is not None:
            query = query.where(Clinic.domain == domain)
        with self._engine.connect() as connection:
            return [TokenEntry(row.domain, row.name, row.created_at) for row in connection.execute(query)]

    def remove(self, domain: str, name: str) -> None:
        """Remove the token ``name`` of ``domain``: it stops working at once."""
        with self._writer.begin() as connection:
            clinic_id = connection.execute(select(Clinic.id).where(Clinic.domain == domain)).scalar()
            removed = connection.execute(
                delete(ApiToken).where(ApiToken.clinic_id == clinic_id, ApiToken.name == name.strip())
            ).rowcount
        if not removed:
            raise StoreError(f"{domain} has no token called {name.strip()}; see `sentral token list`")

    def find(self, token: str) -> TokenEntry | None:
        """The entry of ``token``, or None when no such token is stored."""
        query = (
            select(Clinic.domain, ApiToken.name, ApiToken.created_at)
            .join(Clinic, Clinic.id == ApiToken.clinic_id)
            .where(ApiToken.token_hash == token_hash(token))
        )
        with self._engine.connect() as connection:
            row = connection.execute(query).first()
        return None if row is None else TokenEntry(row.domain, row.name, row.created_at)


__all__ = ["TOKEN_PREFIX", "TokenEntry", "TokenStore", "new_token", "token_hash", "validate_token_name"]
