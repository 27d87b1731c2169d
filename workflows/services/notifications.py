"""In-app notifications and the e-mails that go with them, written in the transaction of the step that
caused them (so a rolled-back click notifies nobody, and a committed one always does).

``on_new_tasks`` runs on the hot path of every start, completion and timer firing: it costs nothing
when the step made no task, and otherwise one SELECT (tasks, their contracts and every holder of
their roles at once) plus one INSERT of notifications and, if anyone has an address, one INSERT into
the e-mail outbox (both executemany). The worker sends the outbox (``workflows.services.mail``).

The stored notification keeps ``kind`` and ``params`` only; its text is rendered in the reader's
language (the web app with gettext, e-mails with the small table below).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from models import Instance, Notification, OutboxEmail, TaskRow, User, UserRole

from .. import config
from ..bilingual import language_of, name_in
from ..runtime import Runtime
from .accounts import ROLES, TEAM_SCOPED_ROLES
from .paging import Page

DEFAULT_TZ = "Asia/Shanghai"

# kind -> language -> (subject, body); filled with str.format from the notification's params plus
# ``user`` (the recipient's display name), ``role`` (localized), ``task`` (localized) and ``due`` (local time)
TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "task_arrived": {
        "en": ("[Lvyue] New task: {task} ({business_key})",
               "Hello {user},\n\n"
               "a new task is waiting for the role {role}.\n\n"
               "  Task:     {task}\n"
               "  Contract: {business_key}\n"
               "  Customer: {customer}\n"
               "  Due:      {due}\n\n"
               "Open it from your queue in Lvyue (task #{task_id}).\n"),
        "zh-CN": ("【履约】新任务：{task}（{business_key}）",
                  "{user}，您好：\n\n"
                  "角色「{role}」有一项新任务待处理。\n\n"
                  "  任务：{task}\n"
                  "  合同：{business_key}\n"
                  "  客户：{customer}\n"
                  "  截止：{due}\n\n"
                  "请在履约系统的任务队列中处理（任务 #{task_id}）。\n"),
    },
    "escalation": {
        "en": ("[Lvyue] Escalation: {task} ({business_key})",
               "Hello {user},\n\n"
               "a deadline on contract {business_key} was missed and the matter was escalated to the "
               "role {role}.\n\n"
               "  Task:     {task}\n"
               "  Contract: {business_key}\n"
               "  Customer: {customer}\n"
               "  Due:      {due}\n\n"
               "Please take it up in Lvyue (task #{task_id}).\n"),
        "zh-CN": ("【履约】升级处理：{task}（{business_key}）",
                  "{user}，您好：\n\n"
                  "合同 {business_key} 已超过期限，事项已升级至角色「{role}」处理。\n\n"
                  "  任务：{task}\n"
                  "  合同：{business_key}\n"
                  "  客户：{customer}\n"
                  "  截止：{due}\n\n"
                  "请在履约系统中处理（任务 #{task_id}）。\n"),
    },
    "task_reassigned": {
        "en": ("[Lvyue] {by} handed you a task: {task} ({business_key})",
               "Hello {user},\n\n"
               "{by} handed the following task to you.\n\n"
               "  Task:     {task}\n"
               "  Contract: {business_key}\n"
               "  Customer: {customer}\n"
               "  Due:      {due}\n"
               "  Reason:   {reason}\n\n"
               "It is in your queue in Lvyue (task #{task_id}).\n"),
        "zh-CN": ("【履约】{by} 将任务转交给您：{task}（{business_key}）",
                  "{user}，您好：\n\n"
                  "{by} 将以下任务转交给您。\n\n"
                  "  任务：{task}\n"
                  "  合同：{business_key}\n"
                  "  客户：{customer}\n"
                  "  截止：{due}\n"
                  "  原因：{reason}\n\n"
                  "任务已在您的履约任务队列中（任务 #{task_id}）。\n"),
    },
    "remind": {
        "en": ("[Lvyue] Reminder from {by}: {task} ({business_key})",
               "Hello {user},\n\n"
               "{by} reminds you of a task that is waiting.\n\n"
               "  Task:     {task}\n"
               "  Contract: {business_key}\n"
               "  Customer: {customer}\n"
               "  Due:      {due}\n"
               "  Message:  {reason}\n\n"
               "Please take it up in Lvyue (task #{task_id}).\n"),
        "zh-CN": ("【履约】{by} 催办：{task}（{business_key}）",
                  "{user}，您好：\n\n"
                  "{by} 催办以下待处理任务。\n\n"
                  "  任务：{task}\n"
                  "  合同：{business_key}\n"
                  "  客户：{customer}\n"
                  "  截止：{due}\n"
                  "  留言：{reason}\n\n"
                  "请在履约系统中尽快处理（任务 #{task_id}）。\n"),
    },
    # services/substitutes.py: {by} is the away user (substitute) or the substitute who held it (substitute_end)
    "substitute": {
        "en": ("[Lvyue] You stand in for {by}: {task} ({business_key})",
               "Hello {user},\n\n"
               "{by} is away and named you as substitute. You hold this task of theirs on their behalf until "
               "they are back.\n\n"
               "  Task:     {task}\n"
               "  Contract: {business_key}\n"
               "  Customer: {customer}\n"
               "  Due:      {due}\n"
               "  Reason:   {reason}\n\n"
               "It is in your queue in Lvyue (task #{task_id}).\n"),
        "zh-CN": ("【履约】您代理 {by}：{task}（{business_key}）",
                  "{user}，您好：\n\n"
                  "{by} 外出期间指定您为代理人。在其返回前，您代其办理以下任务。\n\n"
                  "  任务：{task}\n"
                  "  合同：{business_key}\n"
                  "  客户：{customer}\n"
                  "  截止：{due}\n"
                  "  事由：{reason}\n\n"
                  "任务已在您的履约任务队列中（任务 #{task_id}）。\n"),
    },
    "substitute_end": {
        "en": ("[Lvyue] Back with you: {task} ({business_key})",
               "Hello {user},\n\n"
               "your time away has ended. {by} held this task on your behalf; it is yours again.\n\n"
               "  Task:     {task}\n"
               "  Contract: {business_key}\n"
               "  Customer: {customer}\n"
               "  Due:      {due}\n\n"
               "It is in your queue in Lvyue (task #{task_id}).\n"),
        "zh-CN": ("【履约】任务已交还给您：{task}（{business_key}）",
                  "{user}，您好：\n\n"
                  "您的外出代理已结束。{by} 代您办理的以下任务已交还给您。\n\n"
                  "  任务：{task}\n"
                  "  合同：{business_key}\n"
                  "  客户：{customer}\n"
                  "  截止：{due}\n\n"
                  "任务已在您的履约任务队列中（任务 #{task_id}）。\n"),
    },
    # added signers (加签, services/countersign.py); opinion mails link to the opinion, not to the task
    "opinion_asked": {
        "en": ("[Lvyue] {by} asks your opinion: {task} ({business_key})",
               "Hello {user},\n\n"
               "{by} asks for your opinion before completing a task; it waits for your answer.\n\n"
               "  Task:     {task}\n"
               "  Contract: {business_key}\n"
               "  Customer: {customer}\n"
               "  Question: {reason}\n\n"
               "Answer it in Lvyue under \"Opinions asked of me\".\n"),
        "zh-CN": ("【履约】{by} 征询您的意见：{task}（{business_key}）",
                  "{user}，您好：\n\n"
                  "{by} 在办理以下任务前征询您的意见，任务将等待您的答复。\n\n"
                  "  任务：{task}\n"
                  "  合同：{business_key}\n"
                  "  客户：{customer}\n"
                  "  问题：{reason}\n\n"
                  "请在履约系统的「征询我的意见」中答复。\n"),
    },
    "opinion_answered": {
        "en": ("[Lvyue] {by} gave an opinion: {task} ({business_key})",
               "Hello {user},\n\n"
               "{by} answered the question you asked about a task.\n\n"
               "  Task:     {task}\n"
               "  Contract: {business_key}\n"
               "  Customer: {customer}\n"
               "  Opinion:  {position}. {reason}\n\n"
               "Open it in Lvyue (task #{task_id}).\n"),
        "zh-CN": ("【履约】{by} 已答复征询意见：{task}（{business_key}）",
                  "{user}，您好：\n\n"
                  "{by} 已答复您就以下任务征询的意见。\n\n"
                  "  任务：{task}\n"
                  "  合同：{business_key}\n"
                  "  客户：{customer}\n"
                  "  意见：{position}。{reason}\n\n"
                  "请在履约系统中查看（任务 #{task_id}）。\n"),
    },
    "opinion_withdrawn": {
        "en": ("[Lvyue] {by} withdrew a question: {task} ({business_key})",
               "Hello {user},\n\n"
               "{by} withdrew the question they asked you about a task; no answer is needed any more.\n\n"
               "  Task:     {task}\n"
               "  Contract: {business_key}\n"
               "  Customer: {customer}\n"),
        "zh-CN": ("【履约】{by} 已撤回征询：{task}（{business_key}）",
                  "{user}，您好：\n\n"
                  "{by} 已撤回就以下任务向您征询的意见，无需再答复。\n\n"
                  "  任务：{task}\n"
                  "  合同：{business_key}\n"
                  "  客户：{customer}\n"),
    },
    "approver_added": {
        "en": ("[Lvyue] {by} approved and added you as an approver: {task} ({business_key})",
               "Hello {user},\n\n"
               "{by} approved the following task and added you as an approver after them; your decision "
               "completes it.\n\n"
               "  Task:     {task}\n"
               "  Contract: {business_key}\n"
               "  Customer: {customer}\n"
               "  Due:      {due}\n"
               "  Comment:  {reason}\n\n"
               "It is in your queue in Lvyue (task #{task_id}).\n"),
        "zh-CN": ("【履约】{by} 已批准并加签给您：{task}（{business_key}）",
                  "{user}，您好：\n\n"
                  "{by} 已批准以下任务，并在其后加签您审批；任务由您的决定办结。\n\n"
                  "  任务：{task}\n"
                  "  合同：{business_key}\n"
                  "  客户：{customer}\n"
                  "  截止：{due}\n"
                  "  意见：{reason}\n\n"
                  "任务已在您的履约任务队列中（任务 #{task_id}）。\n"),
    },
}
_NONE = {"en": "-", "zh-CN": "无"}
_POSITIONS = {"en": {True: "Agree", False: "Disagree"}, "zh-CN": {True: "同意", False: "不同意"}}


@dataclass(frozen=True)
class _Recipient:
    id: int
    email: str | None
    language: str
    display_name: str
_ROLE_NAMES = {code: {"en": en, "zh-CN": zh} for code, en, zh in ROLES}

# one row per (new task, holder of its role); the actor is dropped in Python so the statement stays constant
_RECIPIENTS = (
    select(TaskRow.id.label("task_id"), TaskRow.instance_id, TaskRow.name, TaskRow.role, TaskRow.due_at,
           Instance.business_key, Instance.customer_name, User.id.label("user_id"), User.display_name, User.email,
           User.language)
    .join(Instance, Instance.id == TaskRow.instance_id)
    .join(UserRole, UserRole.role_code == TaskRow.role)
    .join(User, User.id == UserRole.user_id)
    .where(TaskRow.id.in_(bindparam("task_ids", expanding=True)), TaskRow.assignee_id.is_(None),
           User.active.is_(True), User.service_account.is_(False),
           # the sales roles hear of their own team's contracts only (accounts.in_team)
           or_(TaskRow.role.not_in(sorted(TEAM_SCOPED_ROLES)), User.team.is_(None), Instance.team.is_(None),
               User.team == Instance.team))
    .order_by(TaskRow.id, User.id)
)
_RETURN_PEOPLE = select(
    User.id, User.username, User.display_name, User.email, User.language,
    select(Instance.business_key).where(Instance.id == bindparam("instance_id")).scalar_subquery()
    .label("business_key"),
).where(User.id.in_(bindparam("ids", expanding=True)))
_REASSIGN_TARGET = (
    select(User.id, User.username, User.display_name, User.email, User.language, User.active, User.service_account,
           Instance.business_key, Instance.customer_name)
    .join(Instance, Instance.id == bindparam("instance_id"))
    .where(User.id == bindparam("user_id"))
)
# returned rows are matched on (user, task), unique in a batch: an *ordered* RETURNING would make SQLite
# insert row by row
_INSERT_NOTIFICATIONS = insert(Notification).returning(Notification.id, Notification.user_id, Notification.task_id)
_INSERT_NOTIFICATIONS_PLAIN = insert(Notification)
_INSERT_OUTBOX = insert(OutboxEmail)


def task_name(name: str, language: str) -> str:
    """Task names are bilingual in the BPMN ("Record payment / 登记回款"): the half for ``language``."""
    return name_in(name, language)


def role_name(code: str, language: str) -> str:
    return _ROLE_NAMES.get(code, {}).get(language_of(language), code)


def render(kind: str, params: dict[str, Any], language: str, user: str = "",
           business_tz: str = DEFAULT_TZ) -> tuple[str, str]:
    """Subject and body of the e-mail for a notification, in ``language`` (zh-CN or en)."""
    lang = language_of(language)
    subject, body = TEXTS[kind][lang]
    none = _NONE[lang]
    due = params.get("due_at")
    if due:
        local = datetime.fromisoformat(due).astimezone(ZoneInfo(business_tz))
        due = local.strftime("%Y-%m-%d %H:%M")
    values = {
        "user": user or "", "task": task_name(params.get("task") or "", lang),
        "role": role_name(params.get("role") or "", lang), "business_key": params.get("business_key") or none,
        "customer": params.get("customer") or none, "due": due or none, "task_id": params.get("task_id") or none,
        "by": params.get("by") or none, "reason": params.get("reason") or none,
        "position": _POSITIONS[lang].get(params.get("agrees"), none),
    }
    text = body.format(**values)
    base = config.base_url()
    # ``link``: a page other than the task's (one asked for an opinion may not open the task itself)
    link = params.get("link") or (f"/tasks/{params['task_id']}" if params.get("task_id") else None)
    if base and link:
        text += ("\nOpen: " if lang == "en" else "\n打开：") + f"{base}{link}\n"
    return subject.format(**values)[:300], text


def _conn(conn_or_session: Connection | Session) -> Connection:
    return conn_or_session.connection() if isinstance(conn_or_session, Session) else conn_or_session


def _write(conn: Connection, notes: list[dict[str, Any]], mails: list[tuple[int, dict[str, Any]]]) -> None:
    """Insert ``notes`` and, for ``mails`` (index into notes, outbox row), the outbox rows linked to them."""
    if not notes:
        return
    if not mails:
        conn.execute(_INSERT_NOTIFICATIONS_PLAIN, notes)
        return
    returned = {(r.user_id, r.task_id): r.id for r in conn.execute(_INSERT_NOTIFICATIONS, notes)}
    for index, mail in mails:
        note = notes[index]
        mail["notification_id"] = returned[(note["user_id"], note["task_id"])]
    conn.execute(_INSERT_OUTBOX, [mail for _, mail in mails])


class _Batch:
    """The notifications (and e-mails) one step writes, built row by row and inserted together."""

    def __init__(self, now: datetime, business_tz: str) -> None:
        self.now, self.business_tz = now, business_tz
        self.notes: list[dict[str, Any]] = []
        self.mails: list[tuple[int, dict[str, Any]]] = []

    def add(self, recipient, kind: str, *, task_id: int, name: str, role: str, due_at: datetime | None,
            instance_id: int, business_key: str | None, customer: str | None, **extra: Any) -> None:
        """``recipient`` has id, email, language and display_name; ``extra`` adds ``by``/``reason``."""
        params = {"task": name, "task_id": task_id, "business_key": business_key, "customer": customer,
                  "role": role, "due_at": due_at.isoformat() if due_at is not None else None, **extra}
        if recipient.email:
            subject, body = render(kind, params, recipient.language, recipient.display_name, self.business_tz)
            self.mails.append((len(self.notes), dict(
                to_addr=recipient.email, subject=subject, body=body, status="pending", attempts=0,
                created_at=self.now, next_attempt_at=self.now, sent_at=None, last_error=None)))
        self.notes.append(dict(user_id=recipient.id, kind=kind, task_id=task_id, instance_id=instance_id,
                               params=params, created_at=self.now, read_at=None))

    def write(self, conn: Connection) -> int:
        _write(conn, self.notes, self.mails)
        return len(self.notes)


def on_new_tasks(conn_or_session: Connection | Session, task_ids: Collection[int], now: datetime,
                 actor_id: int | None = None, escalated: Collection[int] = (),
                 business_tz: str = DEFAULT_TZ) -> int:
    """Notify every active person (not service accounts) holding the role of each new task, except
    ``actor_id`` who caused the step; tasks in ``escalated`` (made by an escalation) are announced as
    such. Returns the number of notifications written."""
    if not task_ids:
        return 0
    conn = _conn(conn_or_session)
    batch = _Batch(now, business_tz)
    for row in conn.execute(_RECIPIENTS, {"task_ids": list(task_ids)}):
        if row.user_id != actor_id:
            batch.add(_Recipient(row.user_id, row.email, row.language, row.display_name),
                      "escalation" if row.task_id in escalated else "task_arrived",
                      task_id=row.task_id, name=row.name, role=row.role, due_at=row.due_at,
                      instance_id=row.instance_id, business_key=row.business_key, customer=row.customer_name)
    return batch.write(conn)


def on_returned(conn: Connection, returned: list[tuple[int, dict[str, Any]]], instance_id: int,
                customer: str | None, actor_id: int, now: datetime, business_tz: str = DEFAULT_TZ) -> int:
    """Tasks sent back to the person who did them before (``returned``: task id and its new row): each
    holder is told who sent it back, as a ``task_reassigned`` notification. One SELECT, one INSERT."""
    people = {r.id: r for r in conn.execute(_RETURN_PEOPLE, {
        "ids": sorted({actor_id} | {row["assignee_id"] for _, row in returned}), "instance_id": instance_id})}
    actor = people.get(actor_id)
    batch = _Batch(now, business_tz)
    for task_id, row in returned:
        target = people.get(row["assignee_id"])
        if target is not None and actor is not None and target.id != actor_id:
            batch.add(target, "task_reassigned", task_id=task_id, name=row["name"], role=row["role"],
                      due_at=row["due_at"], instance_id=instance_id, business_key=target.business_key,
                      customer=customer, by=actor.username, reason="")
    return batch.write(conn)


def on_reassigned(session: Session, task_row: TaskRow, target_user_id: int, by_username: str, reason: str,
                  now: datetime, business_tz: str = DEFAULT_TZ) -> None:
    """A ``task_reassigned`` notification (and e-mail) for the new holder of ``task_row``. Nothing when
    someone hands a task to themselves."""
    conn = _conn(session)
    target = conn.execute(_REASSIGN_TARGET, {"instance_id": task_row.instance_id, "user_id": target_user_id}).first()
    if target is None or not target.active or target.service_account or target.username == by_username:
        return
    batch = _Batch(now, business_tz)
    batch.add(target, "task_reassigned", task_id=task_row.id, name=task_row.name, role=task_row.role,
              due_at=task_row.due_at, instance_id=task_row.instance_id, business_key=target.business_key,
              customer=target.customer_name, by=by_username, reason=reason)
    batch.write(conn)


# --- reading the inbox ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxItem:
    id: int
    kind: str
    params: dict[str, Any]
    task_id: int | None
    instance_id: int | None
    created_at: datetime
    read_at: datetime | None

    @property
    def unread(self) -> bool:
        return self.read_at is None



def _mine(user_id: int, unread_only: bool = False) -> list:
    where = [Notification.user_id == user_id]
    if unread_only:
        where.append(Notification.read_at.is_(None))
    return where


def inbox(rt: Runtime, user_id: int, page: int = 1, per_page: int = 20, unread_only: bool = False) -> Page[InboxItem]:
    """The user's notifications, newest first."""
    page, per_page = max(1, page), min(max(1, per_page), 200)
    where = _mine(user_id, unread_only)
    with rt.read() as s:
        total = s.scalar(select(func.count()).select_from(Notification).where(*where)) or 0
        rows = s.execute(select(Notification.id, Notification.kind, Notification.params, Notification.task_id,
                                Notification.instance_id, Notification.created_at, Notification.read_at)
                         .where(*where).order_by(Notification.id.desc())
                         .offset((page - 1) * per_page).limit(per_page)).all()
    return Page([InboxItem(*r) for r in rows], total, page, per_page)


def unread_count(rt: Runtime, user_id: int) -> int:
    """Answered from the index (user_id, read_at, id)."""
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(Notification).where(*_mine(user_id, True))) or 0


def mark_read(rt: Runtime, user_id: int, ids: Iterable[int] | None = None) -> int:
    """Mark the user's unread notifications ``ids`` (``None``: all of them) read. Ids of other users'
    notifications are ignored. Returns how many were marked."""
    where = _mine(user_id, True)
    if ids is not None:
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        where.append(Notification.id.in_(ids))
    with rt.write() as s:
        result = s.execute(update(Notification).where(*where).values(read_at=rt.clock.now()),
                           execution_options={"synchronize_session": False})
        return result.rowcount
