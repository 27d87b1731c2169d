"""Users and roles: creation, lookup, password login with its rate limit, the demo accounts ``lvyue init-db``
creates, and the administration of accounts (the admin pages and the shell)."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from models import LoginAttempt, Role, User, UserRole

from ..runtime import Runtime
from . import audit
from .errors import InvalidInput, NotFound, PermissionDenied
from .paging import Page

# (code, English, 中文); the first eight are lanes of the processes
ROLES: list[tuple[str, str, str]] = [
    ("sales_rep", "Sales rep", "销售代表"),
    ("supervisor", "Sales supervisor", "销售主管"),
    ("manager", "Sales manager", "销售经理"),
    ("director", "Sales director", "销售总监"),
    ("legal", "Legal", "法务"),
    ("finance", "Finance", "财务"),
    ("delivery", "Delivery", "交付"),
    ("after_sales", "After-sales", "售后"),
    ("process_owner", "Process owner", "流程负责人"),
    ("compliance", "Compliance", "合规审计"),
    ("admin", "Administrator", "系统管理员"),
]
ROLE_CODES = {code for code, _, _ in ROLES}
SUPERVISORY_ROLES = {"supervisor", "manager", "director"}
LANGUAGE_CODES = ("zh-CN", "en")
# sales roles work within their team: a rep or supervisor of one team never sees or acts on another team's
# contracts; the others (legal, finance, delivery, after-sales, the director) serve the whole company.
# A user without a team works for every team.
TEAM_SCOPED_ROLES = frozenset({"sales_rep", "supervisor", "manager"})


def in_team(user_team: str | None, role: str, contract_team: str | None) -> bool:
    """May a user of ``user_team`` do ``role``'s work on a contract of ``contract_team``?"""
    return role not in TEAM_SCOPED_ROLES or user_team is None or contract_team is None or user_team == contract_team


def supervises(user: UserView, contract_team: str | None) -> bool:
    """Does ``user`` oversee contracts of ``contract_team``: the director all, a supervisor or manager their
    own team's (or every team's when they have none)?"""
    return "director" in user.roles or (
        bool(user.roles & SUPERVISORY_ROLES) and (user.team is None or user.team == contract_team))

# username, display name, roles, team
DEMO_USERS: list[tuple[str, str, list[str], str | None]] = [
    ("rep1", "王小明 Wang Xiaoming", ["sales_rep"], "east"),
    ("rep2", "李娜 Li Na", ["sales_rep"], "east"),
    ("sup1", "张伟 Zhang Wei", ["supervisor"], "east"),
    ("mgr1", "刘洋 Liu Yang", ["manager"], "east"),
    ("dir1", "陈静 Chen Jing", ["director"], None),
    ("legal1", "赵敏 Zhao Min", ["legal"], None),
    ("fin1", "孙丽 Sun Li", ["finance"], None),
    ("dlv1", "周强 Zhou Qiang", ["delivery"], None),
    ("svc1", "吴芳 Wu Fang", ["after_sales"], None),
    ("owner1", "郑凯 Zheng Kai", ["process_owner"], None),
    ("audit1", "冯雪 Feng Xue", ["compliance"], None),
    ("admin", "Administrator 管理员", ["admin"], None),
]
DEMO_PASSWORD = "lvyue-demo"


@dataclass(frozen=True)
class UserView:
    id: int
    username: str
    display_name: str
    roles: frozenset[str]
    team: str | None
    language: str


def _view(user: User) -> UserView:
    return UserView(user.id, user.username, user.display_name, frozenset(user.role_codes), user.team,
                    user.language)


def ensure_roles(rt: Runtime) -> None:
    with rt.write() as s:
        have = set(s.scalars(select(Role.code)))
        for code, en, zh in ROLES:
            if code not in have:
                s.add(Role(code=code, name_en=en, name_zh=zh))


def create_user(rt: Runtime, username: str, password: str, roles: list[str], display_name: str | None = None,
                team: str | None = None, email: str | None = None, language: str = "zh-CN") -> UserView:
    unknown = set(roles) - ROLE_CODES
    if unknown:
        raise InvalidInput(f"unknown role(s): {', '.join(sorted(unknown))}")
    if not username or len(password) < 8:
        raise InvalidInput("a user needs a name and a password of at least 8 characters")
    with rt.write() as s:
        if s.scalar(select(User.id).where(User.username == username)) is not None:
            raise InvalidInput(f"user '{username}' already exists")
        return _view(_insert_user(s, rt, rt.clock.now(), username, password, roles, display_name, team, email,
                                  language))


def _insert_user(s, rt: Runtime, now: datetime, username: str, password: str, roles: list[str],
                 display_name: str | None, team: str | None, email: str | None, language: str,
                 service_account: bool = False) -> User:
    user = User(username=username, display_name=display_name or username, email=email, team=team,
                password_hash=generate_password_hash(password, method=rt.password_method), language=language,
                created_at=now, active=True, service_account=service_account)
    user.roles = [UserRole(role_code=r) for r in sorted(set(roles))]
    s.add(user)
    s.flush()
    return user


def ensure_demo_users(rt: Runtime) -> list[UserView]:
    ensure_roles(rt)
    made = []
    for username, name, roles, team in DEMO_USERS:
        with rt.read() as s:
            exists = s.scalar(select(User.id).where(User.username == username))
        if exists is None:
            made.append(create_user(rt, username, DEMO_PASSWORD, roles, display_name=name, team=team))
    return made


def get_user(rt: Runtime, username: str) -> UserView:
    with rt.read() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None or not user.active:
            raise NotFound(f"no active user '{username}'")
        return _view(user)


_DUMMY_HASHES: dict[str, str] = {}


def _dummy_hash(rt: Runtime) -> str:
    found = _DUMMY_HASHES.get(rt.password_method)
    if found is None:
        found = _DUMMY_HASHES[rt.password_method] = generate_password_hash(secrets.token_hex(16), rt.password_method)
    return found


def authenticate(rt: Runtime, username: str, password: str) -> UserView | None:
    with rt.read() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None or not user.active or user.service_account:
            # the same work as a real check, so the time taken does not tell which user names exist
            check_password_hash(_dummy_hash(rt), password)
            return None
        if not check_password_hash(user.password_hash, password):
            return None
        return _view(user)


def users_with_demo_password(rt: Runtime) -> list[str]:
    """The demo accounts that are active and still have the demo password, which anyone can read in this
    repository: a production server must not accept them (``webapp.wsgi`` refuses to start)."""
    demo_names = [name for name, *_ in DEMO_USERS]
    with rt.read() as s:
        rows = s.execute(select(User.username, User.password_hash)
                         .where(User.username.in_(demo_names), User.active.is_(True))).all()
    return sorted(name for name, hashed in rows if check_password_hash(hashed, DEMO_PASSWORD))


class RateLimited(InvalidInput):
    """Too many failed logins for a user name or from an address; try again later."""


@dataclass(frozen=True)
class LoginPolicy:
    max_failures: int = 5
    max_failures_per_addr: int = 30
    window_seconds: int = 900


def login(rt: Runtime, username: str, password: str, remote_addr: str | None,
          policy: LoginPolicy = LoginPolicy()) -> UserView | None:
    """Check a password login, counting failures per user name and per address (across web workers).
    Raises ``RateLimited`` before checking the password once either limit is reached."""
    username = (username or "").strip()[:80]
    now = rt.clock.now()
    since = now - timedelta(seconds=policy.window_seconds)
    with rt.read() as s:
        by_name = s.scalar(select(func.count()).select_from(LoginAttempt).where(
            LoginAttempt.username == username, LoginAttempt.at >= since, LoginAttempt.ok.is_(False)))
        by_addr = 0
        if remote_addr:
            by_addr = s.scalar(select(func.count()).select_from(LoginAttempt).where(
                LoginAttempt.remote_addr == remote_addr, LoginAttempt.at >= since, LoginAttempt.ok.is_(False)))
    if by_name >= policy.max_failures or by_addr >= policy.max_failures_per_addr:
        raise RateLimited("too many failed logins; wait a few minutes and try again")
    user = authenticate(rt, username, password)
    with rt.write() as s:
        s.execute(insert(LoginAttempt).values(username=username, remote_addr=(remote_addr or "")[:64] or None,
                                              at=now, ok=user is not None))
    return user


def get_user_by_id(rt: Runtime, user_id: int) -> UserView | None:
    with rt.read() as s:
        user = s.get(User, user_id)
        if user is None or not user.active:
            return None
        return _view(user)


def set_language(rt: Runtime, user_id: int, language: str) -> None:
    if language not in LANGUAGE_CODES:
        raise InvalidInput("unknown language", {"language": "must be zh-CN or en"})
    with rt.write() as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user #{user_id}")
        user.language = language


def users_with_role(rt: Runtime, role: str) -> list[UserView]:
    """Active people (not service accounts) holding ``role``: the candidates to reassign a task to."""
    with rt.read() as s:
        users = s.scalars(select(User).join(UserRole).where(UserRole.role_code == role, User.active.is_(True),
                                                            User.service_account.is_(False))
                          .order_by(User.username)).all()
        return [_view(u) for u in users]


# --- Administration: list, create and edit accounts (the admin pages and the shell) ---------------------

USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{1,79}")


@dataclass(frozen=True)
class UserRecord:
    """An account as the admin pages show it (including inactive users and service accounts)."""

    id: int
    username: str
    display_name: str
    email: str | None
    team: str | None
    language: str
    active: bool
    service_account: bool
    roles: tuple[str, ...]
    created_at: datetime



def _record(user: User) -> UserRecord:
    return UserRecord(user.id, user.username, user.display_name, user.email, user.team, user.language, user.active,
                      user.service_account, tuple(sorted(user.role_codes)), user.created_at)


def require_admin(actor: UserView | None) -> None:
    """``None`` is the shell (``lvyue`` commands run by whoever holds the database); anyone else needs 'admin'."""
    if actor is not None and "admin" not in actor.roles:
        raise PermissionDenied(f"{actor.username} is not an administrator")


def _actor_fields(actor: UserView | None) -> dict:
    return {"actor_id": actor.id if actor else None, "actor": actor.username if actor else "system"}


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _check_profile(errors: dict[str, str], roles: list[str], display_name: str | None, team: str | None,
                   email: str | None) -> None:
    unknown = sorted(set(roles) - ROLE_CODES)
    if unknown:
        errors["roles"] = f"unknown role(s): {', '.join(unknown)}"
    if display_name is not None and len(display_name) > 120:
        errors["display_name"] = "at most 120 characters"
    if team is not None and len(team) > 80:
        errors["team"] = "at most 80 characters"
    if email is not None and (len(email) > 200 or not re.fullmatch(r"[^@\s]+@[^@\s]+", email)):
        errors["email"] = "not an e-mail address"


def _check_password(errors: dict[str, str], password: str | None) -> None:
    if len(password or "") < 8:
        errors["password"] = "at least 8 characters"
    elif password == DEMO_PASSWORD:
        errors["password"] = "this is the demo password, published with the source code"


def list_users(rt: Runtime, page: int = 1, per_page: int = 20, q: str | None = None) -> Page[UserRecord]:
    """Accounts by user name; ``q`` matches user name, display name, e-mail or team."""
    page, per_page = max(1, page), min(max(1, per_page), 200)
    where = []
    q = _clean(q)
    if q:
        q = q[:100]
        where.append(or_(User.username.contains(q, autoescape=True), User.display_name.contains(q, autoescape=True),
                         User.email.contains(q, autoescape=True), User.team.contains(q, autoescape=True)))
    with rt.read() as s:
        total = s.scalar(select(func.count()).select_from(User).where(*where)) or 0
        users = s.scalars(select(User).where(*where).order_by(User.username)
                          .offset((page - 1) * per_page).limit(per_page)).all()
        return Page([_record(u) for u in users], total, page, per_page)


def get_user_record(rt: Runtime, user_id: int) -> UserRecord:
    with rt.read() as s:
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user #{user_id}")
        return _record(user)


def add_user(rt: Runtime, actor: UserView | None, username: str, password: str | None, roles: list[str],
             display_name: str | None = None, team: str | None = None, email: str | None = None,
             language: str = "zh-CN", service_account: bool = False) -> UserRecord:
    """Create an account. A service account gets a random password nobody knows: it signs in with tokens only."""
    require_admin(actor)
    username = (username or "").strip()
    display_name, team, email = _clean(display_name), _clean(team), _clean(email)
    roles = sorted(set(roles or []))
    errors: dict[str, str] = {}
    if not USERNAME_RE.fullmatch(username):
        errors["username"] = "2 to 80 letters, digits or . _ - @, starting with a letter or digit"
    if service_account:
        password = secrets.token_urlsafe(32)
    else:
        _check_password(errors, password)
    if language not in LANGUAGE_CODES:
        errors["language"] = "must be zh-CN or en"
    _check_profile(errors, roles, display_name, team, email)
    if errors:
        raise InvalidInput("the account has errors", errors)
    now = rt.clock.now()
    try:
        with rt.write() as s:
            if s.scalar(select(User.id).where(User.username == username)) is not None:
                raise InvalidInput("user name taken", {"username": "this user name is taken"})
            user = _insert_user(s, rt, now, username, password, roles, display_name, team, email, language,
                                service_account)
            audit.record(s, now, "user_created", **_actor_fields(actor),
                         data={"user_id": user.id, "username": username, "roles": roles, "team": team,
                               "service_account": service_account})
            return _record(user)
    except IntegrityError:  # a concurrent create of the same name
        raise InvalidInput("user name taken", {"username": "this user name is taken"}) from None


def create_service_account(rt: Runtime, username: str, display_name: str | None, roles: list[str],
                           actor: UserView | None) -> UserRecord:
    """An account for another system: API tokens only, no password login."""
    return add_user(rt, actor, username, None, roles, display_name=display_name, service_account=True)


def update_user(rt: Runtime, user_id: int, roles: list[str], display_name: str | None, team: str | None,
                email: str | None, active: bool, actor: UserView | None) -> UserRecord:
    """Change an account's roles, profile and whether it may sign in. The last active (human) administrator
    keeps the admin role and stays active, so the system always has someone who can manage it."""
    require_admin(actor)
    display_name, team, email = _clean(display_name), _clean(team), _clean(email)
    roles = sorted(set(roles or []))
    errors: dict[str, str] = {}
    _check_profile(errors, roles, display_name, team, email)
    if errors:
        raise InvalidInput("the account has errors", errors)
    now = rt.clock.now()
    with rt.write() as s:
        admins = (select(User.id).join(UserRole).where(UserRole.role_code == "admin", User.active.is_(True),
                                                         User.service_account.is_(False)))
        if rt.postgres:  # two admins demoting each other at once: the second waits, then sees the first
            s.execute(admins.with_for_update(of=User)).all()
        user = s.get(User, user_id)
        if user is None:
            raise NotFound(f"no user #{user_id}")
        before = {"roles": sorted(user.role_codes), "display_name": user.display_name, "team": user.team,
                  "email": user.email, "active": user.active}
        was_admin = "admin" in before["roles"] and user.active and not user.service_account
        if was_admin and ("admin" not in roles or not active):
            others = s.scalar(select(func.count()).select_from(admins.where(User.id != user.id).subquery()))
            if not others:
                field = "roles" if "admin" not in roles else "active"
                raise InvalidInput("the last administrator cannot be removed",
                                   {field: "this is the last active administrator; make someone else "
                                           "an administrator first"})
        keep = set(roles)
        for link in list(user.roles):
            if link.role_code not in keep:
                user.roles.remove(link)
        for code in sorted(keep - user.role_codes):
            user.roles.append(UserRole(role_code=code))
        user.display_name = display_name or user.username
        user.team, user.email, user.active = team, email, bool(active)
        after = {"roles": roles, "display_name": user.display_name, "team": team, "email": email,
                 "active": bool(active)}
        diff = audit.changes(before, after)
        if diff:
            audit.record(s, now, "user_updated", **_actor_fields(actor),
                         data={"user_id": user.id, "username": user.username, "changes": diff})
        s.flush()
        return _record(user)


def set_password(rt: Runtime, username: str, password: str, actor: UserView | None) -> None:
    """Give a person's account a new password (an administrator, or the shell). The audit event says who and
    when, never the password. Service accounts have none: they sign in with tokens."""
    require_admin(actor)
    errors: dict[str, str] = {}
    _check_password(errors, password)
    if errors:
        raise InvalidInput("the password was not changed", errors)
    now = rt.clock.now()
    with rt.write() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise NotFound(f"no user '{username}'")
        if user.service_account:
            raise InvalidInput("a service account has no password", {"username": "signs in with API tokens only"})
        user.password_hash = generate_password_hash(password, method=rt.password_method)
        audit.record(s, now, "password_set", **_actor_fields(actor), data={"user_id": user.id, "username": username})
