"""Users and roles: creation, lookup, and the demo accounts ``lvyue init-db`` creates."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from models import Role, User, UserRole

from ..runtime import Runtime
from .errors import InvalidInput, NotFound

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
        user = User(username=username, display_name=display_name or username, email=email, team=team,
                    password_hash=generate_password_hash(password, method=rt.password_method),
                    language=language,
                    created_at=rt.clock.now(), active=True)
        user.roles = [UserRole(role_code=r) for r in sorted(set(roles))]
        s.add(user)
        s.flush()
        return _view(user)


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


def authenticate(rt: Runtime, username: str, password: str) -> UserView | None:
    with rt.read() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None or not user.active or not check_password_hash(user.password_hash, password):
            return None
        return _view(user)
