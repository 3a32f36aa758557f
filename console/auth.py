"""Who may use the console: users with roles, sign-in sessions and API tokens, all in Redis.

* Users (``RedisKeys.console_user``): a role and an Argon2id password hash (argon2-cffi's
  defaults; a hash made with older parameters is upgraded at the next sign-in). Names are
  lower-case ``[a-z0-9._-]``; passwords at least ``MIN_PASSWORD`` characters.
* Sessions (``RedisKeys.console_session``): the cookie holds 32 random bytes; Redis keeps only their
  SHA-256 (a copy of Redis gives no usable session), the user name and the session's CSRF token.
  The role is read from the user record on every request, so a role change or a removed user takes
  effect at once; signing out deletes the session.
* API tokens (``RedisKeys.console_token``): ``swc_`` + 32 random bytes, shown once, stored as SHA-256
  (high-entropy secrets need no slow hash), with a name and a role. Sent as ``Authorization: Bearer``.
* Sign-in throttling: ``login_max_failures`` failures of one user name lock it for ``login_lockout_s``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from spillwatch.events import utcnow
from spillwatch.redis_keys import RedisKeys

MIN_PASSWORD = 10
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
TOKEN_PREFIX = "swc_"

_hasher = PasswordHasher()
# verified against when the user does not exist, so an unknown name costs the same time as a known one
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class Role(StrEnum):
    VIEWER = "viewer"  # read pages and the API
    RESPONDER = "responder"  # + acknowledge and label incidents
    ADMIN = "admin"  # + manage users


_RANK = {Role.VIEWER: 0, Role.RESPONDER: 1, Role.ADMIN: 2}


def allows(role: Role | str, needed: Role | str) -> bool:
    """Whether ``role`` may do what ``needed`` may (roles are nested: admin > responder > viewer)."""
    return _RANK[Role(role)] >= _RANK[Role(needed)]


class AuthError(ValueError):
    """A user or token operation that cannot be done (bad name, weak password, exists, unknown)."""


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise AuthError("user names are 1-64 characters: lower-case letters, digits, '.', '_', '-'")
    return name


def check_password(password: str) -> str:
    if len(password or "") < MIN_PASSWORD:
        raise AuthError(f"passwords need at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AuthError("passwords are at most 1024 characters")
    return password


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    created_at: str = ""


@dataclass(frozen=True)
class Principal:
    """The caller of one request: a signed-in user (``session``) or an API token (``token``)."""

    name: str
    role: Role
    kind: Literal["session", "token"]
    csrf: str | None = None  # the session's CSRF token (sessions only)
    session_digest: str | None = None

    def allows(self, needed: Role) -> bool:
        return allows(self.role, needed)


class UserStore:
    def __init__(self, redis: Any, key_prefix: str) -> None:
        self.r = redis
        self.keys = RedisKeys(key_prefix)

    def add(self, name: str, password: str, role: Role | str) -> User:
        check_name(name)
        check_password(password)
        role = Role(role)
        created = utcnow().isoformat()
        key = self.keys.console_user(name)
        if not self.r.hsetnx(key, "password_hash", _hasher.hash(password)):
            raise AuthError(f"user {name!r} exists")
        self.r.hset(key, mapping={"role": role.value, "created_at": created})
        self.r.sadd(self.keys.console_users, name)
        return User(name, role, created)

    def get(self, name: str) -> User | None:
        if not NAME_RE.fullmatch(name or ""):
            return None
        raw = {_s(k): _s(v) for k, v in self.r.hgetall(self.keys.console_user(name)).items()}
        if not raw.get("role"):
            return None
        return User(name, Role(raw["role"]), raw.get("created_at", ""))

    def list(self) -> list[User]:
        names = sorted(_s(n) for n in self.r.smembers(self.keys.console_users))
        return [u for u in (self.get(n) for n in names) if u is not None]

    def count(self) -> int:
        return int(self.r.scard(self.keys.console_users))

    def set_role(self, name: str, role: Role | str) -> User:
        user = self.get(name)
        if user is None:
            raise AuthError(f"no user {name!r}")
        self.r.hset(self.keys.console_user(name), "role", Role(role).value)
        return User(name, Role(role), user.created_at)

    def set_password(self, name: str, password: str) -> None:
        if self.get(name) is None:
            raise AuthError(f"no user {name!r}")
        self.r.hset(self.keys.console_user(name), "password_hash", _hasher.hash(check_password(password)))

    def remove(self, name: str) -> bool:
        """Remove a user; their sessions stop working at once (each request looks the user up)."""
        n = self.r.delete(self.keys.console_user(name))
        self.r.srem(self.keys.console_users, name)
        return bool(n)

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else None (same work for unknown names)."""
        user = self.get(name)
        stored = _s(self.r.hget(self.keys.console_user(name), "password_hash") or "") if user else ""
        try:
            _hasher.verify(stored or _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None or not stored:
            return None
        if _hasher.check_needs_rehash(stored):
            self.r.hset(self.keys.console_user(name), "password_hash", _hasher.hash(password))
        return user


class SessionStore:
    def __init__(self, redis: Any, key_prefix: str, ttl_s: int) -> None:
        self.r = redis
        self.keys = RedisKeys(key_prefix)
        self.ttl_s = int(ttl_s)

    def create(self, user: str) -> tuple[str, str]:
        """A new session: (cookie value, CSRF token)."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        key = self.keys.console_session(digest(sid))
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(key, mapping={"user": user, "csrf": csrf, "created_at": utcnow().isoformat()})
        pipe.expire(key, self.ttl_s)
        pipe.execute()
        return sid, csrf

    def get(self, sid: str) -> tuple[str, str, str] | None:
        """(user, csrf, session digest) of a live session."""
        if not sid or len(sid) > 200:
            return None
        d = digest(sid)
        raw = {_s(k): _s(v) for k, v in self.r.hgetall(self.keys.console_session(d)).items()}
        if not raw.get("user"):
            return None
        return raw["user"], raw.get("csrf", ""), d

    def delete_digest(self, session_digest: str) -> None:
        self.r.delete(self.keys.console_session(session_digest))


class TokenStore:
    def __init__(self, redis: Any, key_prefix: str) -> None:
        self.r = redis
        self.keys = RedisKeys(key_prefix)

    def create(self, name: str, role: Role | str) -> str:
        """A new token for ``name`` (replacing that name's old one); returned once, stored hashed."""
        check_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.revoke(name)
        d = digest(token)
        self.r.hset(self.keys.console_token(d), mapping={"name": name, "role": Role(role).value, "created_at": utcnow().isoformat()})
        self.r.hset(self.keys.console_tokens, name, d)
        return token

    def get(self, token: str) -> tuple[str, Role] | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        raw = {_s(k): _s(v) for k, v in self.r.hgetall(self.keys.console_token(digest(token))).items()}
        if not raw.get("name"):
            return None
        return raw["name"], Role(raw["role"])

    def revoke(self, name: str) -> bool:
        d = self.r.hget(self.keys.console_tokens, name)
        if not d:
            return False
        self.r.delete(self.keys.console_token(_s(d)))
        self.r.hdel(self.keys.console_tokens, name)
        return True

    def list(self) -> list[dict[str, str]]:
        out = []
        for name, d in sorted((_s(k), _s(v)) for k, v in self.r.hgetall(self.keys.console_tokens).items()):
            raw = {_s(k): _s(v) for k, v in self.r.hgetall(self.keys.console_token(d)).items()}
            out.append({"name": name, "role": raw.get("role", "?"), "created_at": raw.get("created_at", "")})
        return out


class LoginThrottle:
    def __init__(self, redis: Any, key_prefix: str, max_failures: int, lockout_s: int) -> None:
        self.r = redis
        self.keys = RedisKeys(key_prefix)
        self.max_failures = max_failures
        self.lockout_s = lockout_s

    def locked(self, name: str) -> bool:
        n = self.r.get(self.keys.console_login_failures(name[:64]))
        return n is not None and int(n) >= self.max_failures

    def failed(self, name: str) -> None:
        key = self.keys.console_login_failures(name[:64])
        pipe = self.r.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, self.lockout_s)
        pipe.execute()

    def succeeded(self, name: str) -> None:
        self.r.delete(self.keys.console_login_failures(name[:64]))


def ensure_admin(users: UserStore, password: str | None) -> bool:
    """Create user ``admin`` with ``password`` when no user exists yet (first start). True if created."""
    if not password or users.count() > 0:
        return False
    try:
        users.add("admin", password, Role.ADMIN)
    except AuthError as exc:
        if "exists" in str(exc):
            return False
        raise
    return True
