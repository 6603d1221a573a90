"""Who may do what: users, roles scoped to communes, passwords, sessions, API tokens.

Roles (domain.md): the admin works for the province; a technician looks after listed communes
or the whole province; the commune culture officer and the editorial board head (approver)
belong to one commune. A user never sees or changes another commune's data: every page and
API endpoint asks `Principal.check(permission, commune_id)`.

Passwords are hashed with Argon2id. A browser session is a random cookie whose SHA-256 is the
row id (a stolen database gives no usable cookie) with its own CSRF token; API tokens work the
same way. Failed logins are rate-limited per address and per user name.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session

from headend.core.models import ApiToken, Commune, User, WebSession

ADMIN, TECHNICIAN, OFFICER, APPROVER = "admin", "technician", "officer", "approver"
ROLES: Final = (ADMIN, TECHNICIAN, OFFICER, APPROVER)
PROVINCE = "*"  # in a user's commune list: every commune of the province

# Permissions. "view" covers the calendar, bulletins, diary, nodes and the audit log.
VIEW, SCHEDULE, MAKE, APPROVE, EMERGENCY, NODES, USERS = (
    "view", "schedule", "make", "approve", "emergency", "nodes", "users")
PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    ADMIN: frozenset({VIEW, SCHEDULE, MAKE, APPROVE, EMERGENCY, NODES, USERS}),
    TECHNICIAN: frozenset({VIEW, NODES}),
    OFFICER: frozenset({VIEW, SCHEDULE, MAKE, EMERGENCY}),
    APPROVER: frozenset({VIEW, SCHEDULE, APPROVE, EMERGENCY}),
}
# API tokens act for their user only within their scopes, and only on /api/*: a token that
# reads (the commune's data, and for a technician the nodes' state), or one that also imports
# drafts (the HTTTN). A read token only reads (web/context.py). No token approves,
# schedules, sends an emergency or manages users: those need a person logged in.
READ, IMPORT = "read", "import"
TOKEN_SCOPES: Final[dict[str, frozenset[str]]] = {
    READ: frozenset({VIEW, NODES}), IMPORT: frozenset({VIEW, NODES, MAKE})}
ROLE_VI: Final = {ADMIN: "Quản trị (tỉnh)", TECHNICIAN: "Kỹ thuật viên",
                  OFFICER: "Cán bộ văn hóa xã", APPROVER: "Trưởng ban biên tập"}
PERMISSION_VI: Final = {
    VIEW: "xem", SCHEDULE: "sửa lịch phát", MAKE: "làm bản tin", APPROVE: "duyệt bản tin",
    EMERGENCY: "phát khẩn cấp", NODES: "điều khiển cụm loa", USERS: "quản lý người dùng"}

SESSION_MS = 12 * 3600 * 1000  # a working day; then log in again
MIN_PASSWORD = 10
_HASHER = PasswordHasher()  # Argon2id, the library's current defaults


class AuthError(Exception):
    """A user that cannot be created or changed; the message says why (Vietnamese / English)."""


class Forbidden(Exception):
    """The user is logged in but may not do this (here)."""


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def password_ok(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The logged-in user of one request."""

    user_id: int
    username: str
    name: str
    role: str
    communes: frozenset[str]  # contains PROVINCE for the whole province
    csrf: str = ""  # the session's token; empty for API tokens (no cookies, no CSRF)
    scopes: frozenset[str] | None = None  # an API token's (TOKEN_SCOPES); None: a session

    @property
    def province_wide(self) -> bool:
        return PROVINCE in self.communes

    def can(self, permission: str) -> bool:
        if self.scopes is not None and not any(
                permission in TOKEN_SCOPES.get(sc, frozenset()) for sc in self.scopes):
            return False
        return permission in PERMISSIONS.get(self.role, frozenset())

    def sees(self, commune_id: str) -> bool:
        return self.province_wide or commune_id in self.communes

    def check(self, permission: str, commune_id: str | None = None) -> None:
        if not self.can(permission):
            raise Forbidden(f"Vai trò {ROLE_VI.get(self.role, self.role)} không được "
                            f"{PERMISSION_VI.get(permission, permission)}.")
        if commune_id is not None and not self.sees(commune_id):
            raise Forbidden("Bạn không có quyền với xã này.")

    def visible(self, commune_ids: Iterable[str]) -> list[str]:
        return [c for c in commune_ids if self.sees(c)]

    @property
    def role_vi(self) -> str:
        return ROLE_VI.get(self.role, self.role)


def _principal(user: User, csrf: str = "",
               scopes: frozenset[str] | None = None) -> Principal:
    return Principal(user.id, user.username, user.name or user.username, user.role,
                     frozenset(json.loads(user.communes or "[]")), csrf, scopes)


def add_user(engine: Engine, username: str, password: str, role: str, communes: list[str],
             now_ms: int, name: str = "") -> Principal:
    """Create a user; checks the role's scope: officer and approver have exactly one commune,
    a technician listed communes or the province, the admin the province."""
    username = username.strip()
    if not username or len(username) > 64 or not username.replace(".", "").replace(
            "-", "").replace("_", "").isalnum():
        raise AuthError("Tên đăng nhập chỉ gồm chữ, số, dấu chấm, gạch ngang, gạch dưới "
                        "(at most 64 letters, digits, '.', '-', '_').")
    if role not in ROLES:
        raise AuthError(f"Vai trò không có: {role!r} (roles: {', '.join(ROLES)}).")
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"Mật khẩu cần ít nhất {MIN_PASSWORD} ký tự "
                        f"(password needs at least {MIN_PASSWORD} characters).")
    scope = sorted(set(communes))
    if role == ADMIN:
        scope = [PROVINCE]
    elif role in (OFFICER, APPROVER) and (len(scope) != 1 or scope == [PROVINCE]):
        raise AuthError(f"{ROLE_VI[role]} thuộc đúng một xã (role {role} needs exactly one "
                        "commune: --commune ID).")
    elif role == TECHNICIAN and not scope:
        raise AuthError("Kỹ thuật viên cần danh sách xã hoặc cả tỉnh (technician needs "
                        "--commune ID ... or --province).")
    with Session(engine) as s, s.begin():
        unknown = [c for c in scope if c != PROVINCE and s.get(Commune, c) is None]
        if unknown:
            raise AuthError(f"Không có xã: {', '.join(unknown)} (unknown commune).")
        if s.scalar(select(User.id).where(User.username == username)) is not None:
            raise AuthError(f"Đã có người dùng '{username}' (user exists).")
        user = User(username=username, name=name.strip()[:200], role=role,
                    communes=json.dumps(scope), password_hash=hash_password(password),
                    active=True, created_ms=now_ms)
        s.add(user)
        s.flush()
        return _principal(user)


def set_password(engine: Engine, username: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"Mật khẩu cần ít nhất {MIN_PASSWORD} ký tự.")
    with Session(engine) as s, s.begin():
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise AuthError(f"Không có người dùng '{username}' (no such user).")
        user.password_hash = hash_password(password)
        s.execute(delete(WebSession).where(WebSession.user_id == user.id))


def authenticate(engine: Engine, username: str, password: str) -> User | None:
    with Session(engine) as s:
        user = s.scalar(select(User).where(User.username == username.strip()))
        if user is None:
            # Spend the same time as a real check, so timing does not tell which names exist.
            password_ok(_DUMMY_HASH, password)
            return None
        if not user.active or not password_ok(user.password_hash, password):
            return None
        s.expunge(user)
        return user


_DUMMY_HASH = hash_password(secrets.token_hex(8))


def communes_of(engine: Engine, username: str) -> list[str]:
    """The communes of the user of that name (PROVINCE for the whole province); none for a
    name nobody has. For filing a failed log-in where that user's commune reads it."""
    with Session(engine) as s:
        raw = s.scalar(select(User.communes).where(User.username == username.strip()))
    try:
        found = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [c for c in found if isinstance(c, str)] if isinstance(found, list) else []


def start_session(engine: Engine, user: User, ip: str, now_ms: int) -> tuple[str, Principal]:
    """A new session for `user`: the cookie value to set and the principal (with its CSRF)."""
    cookie = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    with Session(engine) as s, s.begin():
        # Expired sessions go when anyone logs in: the table stays small without a timer.
        s.execute(delete(WebSession).where(WebSession.expires_ms < now_ms))
        s.add(WebSession(id=digest(cookie), user_id=user.id, csrf=csrf, created_ms=now_ms,
                         expires_ms=now_ms + SESSION_MS, ip=ip[:64]))
    return cookie, _principal(user, csrf)


def end_session(engine: Engine, cookie: str) -> None:
    with Session(engine) as s, s.begin():
        s.execute(delete(WebSession).where(WebSession.id == digest(cookie)))


def session_principal(engine: Engine, cookie: str, now_ms: int) -> Principal | None:
    with Session(engine) as s:
        row = s.execute(select(WebSession, User).join(User, User.id == WebSession.user_id)
                        .where(WebSession.id == digest(cookie))).first()
        if row is None:
            return None
        sess, user = row
        if sess.expires_ms < now_ms or not user.active:
            return None
        return _principal(user, sess.csrf)


def new_token(engine: Engine, username: str, label: str, now_ms: int,
              scopes: Iterable[str] = (READ,)) -> str:
    """A new API token for the user, with these scopes (TOKEN_SCOPES); shown once, stored
    only as its SHA-256."""
    chosen = sorted(set(scopes))
    bad = [x for x in chosen if x not in TOKEN_SCOPES]
    if bad or not chosen:
        raise AuthError(f"Phạm vi mã truy cập phải là {', '.join(TOKEN_SCOPES)} "
                        f"(token scopes: {', '.join(TOKEN_SCOPES)}; got {', '.join(bad)})")
    token = "lx_" + secrets.token_urlsafe(32)
    with Session(engine) as s, s.begin():
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise AuthError(f"Không có người dùng '{username}' (no such user).")
        s.add(ApiToken(id=digest(token), user_id=user.id, label=label[:100],
                       created_ms=now_ms, revoked=False, scopes=",".join(chosen)))
    return token


def revoke_tokens(engine: Engine, username: str, label: str | None = None) -> int:
    """Revoke the user's API tokens (those with `label`, or all); returns how many."""
    with Session(engine) as s, s.begin():
        user_id = s.scalar(select(User.id).where(User.username == username))
        if user_id is None:
            raise AuthError(f"Không có người dùng '{username}' (no such user).")
        q = update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked.is_(False))
        if label is not None:
            q = q.where(ApiToken.label == label)
        return int(s.execute(q.values(revoked=True)).rowcount or 0)  # type: ignore[attr-defined]


def token_principal(engine: Engine, token: str, now_ms: int) -> Principal | None:
    with Session(engine) as s, s.begin():
        row = s.execute(select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                        .where(ApiToken.id == digest(token))).first()
        if row is None:
            return None
        tok, user = row
        if tok.revoked or not user.active:
            return None
        # Last use to the minute: a busy client does not write on every request.
        if tok.last_used_ms is None or now_ms - tok.last_used_ms > 60_000:
            s.execute(update(ApiToken).where(ApiToken.id == tok.id)
                      .values(last_used_ms=now_ms))
        return _principal(user, scopes=frozenset(x for x in tok.scopes.split(",") if x))


class LoginLimiter:
    """Failed logins, counted per (name, address) and per address: `limit` failures of one
    name from one address within `window_ms` make that pair wait; `address_limit` failures
    from one address (many names tried) make the address wait. A name is never locked for
    everyone: wrong passwords typed elsewhere do not keep its owner out. A success clears
    its pair. In memory (one headend process serves the web app), pruned as it goes."""

    def __init__(self, limit: int = 5, window_ms: int = 15 * 60_000,
                 address_limit: int = 20, prune_every: int = 1000) -> None:
        self.limit = limit
        self.address_limit = address_limit
        self.window_ms = window_ms
        self.prune_every = prune_every
        self._fails: dict[str, deque[int]] = {}
        self._lock = threading.Lock()
        self._calls = 0

    def _recent(self, key: str, now_ms: int) -> deque[int]:
        q = self._fails.setdefault(key, deque())
        while q and q[0] <= now_ms - self.window_ms:
            q.popleft()
        return q

    def _keys(self, ip: str, username: str) -> tuple[tuple[str, int], tuple[str, int]]:
        name = username.strip().lower()[:64]
        return (f"pair:{ip}|{name}", self.limit), (f"ip:{ip}", self.address_limit)

    def _prune(self, now_ms: int) -> None:
        self._calls += 1
        if self._calls % self.prune_every:
            return
        for key in [k for k, q in self._fails.items()
                    if not q or q[-1] <= now_ms - self.window_ms]:
            del self._fails[key]

    def wait_ms(self, ip: str, username: str, now_ms: int) -> int:
        """0 when a try is allowed, else how long until the next one is."""
        with self._lock:
            self._prune(now_ms)
            waits = [q[0] + self.window_ms - now_ms for key, limit in self._keys(ip, username)
                     if len(q := self._recent(key, now_ms)) >= limit]
        return max(waits, default=0)

    def failed(self, ip: str, username: str, now_ms: int) -> None:
        with self._lock:
            for key, limit in self._keys(ip, username):
                q = self._recent(key, now_ms)
                q.append(now_ms)
                while len(q) > limit:  # no more than the limit is ever needed
                    q.popleft()

    def succeeded(self, ip: str, username: str) -> None:
        with self._lock:
            self._fails.pop(self._keys(ip, username)[0][0], None)

    def __len__(self) -> int:
        return len(self._fails)


def list_users(engine: Engine) -> list[User]:
    with Session(engine) as s:
        users = list(s.scalars(select(User).order_by(User.username)))
        s.expunge_all()
        return users
