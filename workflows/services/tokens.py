"""API tokens for service accounts: issued once, stored only as a SHA-256, revocable.

A token is ``lvy_`` followed by 43 URL-safe characters (32 random bytes). The database keeps its SHA-256
in hex and looks tokens up by that hash, so no comparison ever runs on the secret itself and a leaked
table does not leak usable tokens. Issuing and revoking are audited.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from models import ApiToken, User

from ..runtime import Runtime
from . import audit
from .accounts import UserRecord, UserView, _actor_fields, _view, get_user_record, require_admin
from .errors import Conflict, InvalidInput, NotFound

TOKEN_PREFIX = "lvy_"
# last_used_at is a hint for admins ("is this token still in use?"), not a log: one write a minute at most
LAST_USED_RESOLUTION = timedelta(minutes=1)
_MAX_TOKEN_LENGTH = 200


@dataclass(frozen=True)
class TokenView:
    id: int
    user_id: int
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True)
class AccountDetail:
    """An account and its tokens: what the admin page of one user shows."""

    user: UserRecord
    tokens: list[TokenView]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _token_view(t: ApiToken) -> TokenView:
    return TokenView(t.id, t.user_id, t.name, t.created_at, t.last_used_at, t.revoked_at)


def issue_token(rt: Runtime, user_id: int, name: str, actor: UserView | None) -> str:
    """Create a token for an active service account and return it; this is the only time it is seen."""
    require_admin(actor)
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise InvalidInput("a token needs a name", {"name": "1 to 120 characters, e.g. what uses the token"})
    now = rt.clock.now()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with rt.write() as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user #{user_id}")
        if not user.service_account:
            raise InvalidInput("tokens are for service accounts",
                               {"name": "tokens are only for service accounts"})
        if not user.active:
            raise InvalidInput("the account is inactive", {"name": "the account is inactive"})
        row = ApiToken(user_id=user.id, name=name, token_hash=hash_token(token), created_at=now)
        s.add(row)
        s.flush()
        audit.record(s, now, "token_issued", **_actor_fields(actor),
                     data={"user_id": user.id, "username": user.username, "token_id": row.id, "name": name})
    return token


def revoke_token(rt: Runtime, token_id: int, actor: UserView | None, user_id: int | None = None) -> TokenView:
    """Revoke a token (for good). ``user_id``, when given, must own it: a form cannot revoke another's token."""
    require_admin(actor)
    now = rt.clock.now()
    with rt.write() as s:
        row = s.get(ApiToken, token_id)
        if row is None or (user_id is not None and row.user_id != user_id):
            raise NotFound(f"no token #{token_id}")
        if row.revoked_at is not None:
            raise Conflict(f"token '{row.name}' was already revoked")
        row.revoked_at = now
        username = s.scalar(select(User.username).where(User.id == row.user_id))
        audit.record(s, now, "token_revoked", **_actor_fields(actor),
                     data={"user_id": row.user_id, "username": username, "token_id": row.id, "name": row.name})
        s.flush()
        return _token_view(row)


def user_for_token(rt: Runtime, token: str | None) -> UserView | None:
    """The active user a bearer token belongs to, or None (unknown, revoked, or the user is inactive)."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
        return None
    digest = hash_token(token)
    with rt.read() as s:
        found = s.execute(select(ApiToken.id, ApiToken.revoked_at, ApiToken.last_used_at, User)
                          .join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == digest)).first()
        if found is None:
            return None
        token_id, revoked_at, last_used_at, user = found
        if revoked_at is not None or not user.active:
            return None
        view = _view(user)
    now = rt.clock.now()
    if last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION:
        stale = now - LAST_USED_RESOLUTION
        with rt.write() as s:  # conditional, so concurrent requests write it once
            s.execute(update(ApiToken).where(ApiToken.id == token_id, or_(
                ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= stale)).values(last_used_at=now))
    return view


def list_tokens(rt: Runtime, user_id: int) -> list[TokenView]:
    """A user's tokens, newest first (revoked ones too, marked as such)."""
    with rt.read() as s:
        rows = s.scalars(select(ApiToken).where(ApiToken.user_id == user_id)
                         .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())).all()
        return [_token_view(t) for t in rows]


def account_detail(rt: Runtime, user_id: int) -> AccountDetail:
    user = get_user_record(rt, user_id)
    return AccountDetail(user, list_tokens(rt, user_id) if user.service_account else [])
