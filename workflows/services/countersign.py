"""Added signers (加签) on an open task: the two ways a reviewer widens a decision before it is taken.

* Opinions (征询意见, 前加签): whoever may complete the task asks named colleagues a question. Each is told
  (in the app and by e-mail) and finds it under "opinions asked of me"; the task cannot be completed
  (``tasks.complete`` calls ``refuse_completion``) until every opinion is answered or withdrawn. An opinion
  decides nothing, so anyone active may be asked.
* An approver after (后加签): the reviewer approves — the task's approval form, validated as a completion
  would be — and hands the task to a colleague, who completes it: their decision picks the path. The
  reviewer's approval is the audit event ``countersign``; the engine task stays open and keeps its role.

The added approver's completion *is* the task's decision, so they need what anyone completing it needs: the
task's role, in the contract's team where the role is team-scoped (as for a reassignment). Otherwise a
supervisor could hand a supervisor's decision to a sales rep. A colleague without the role can be asked for
an opinion instead. Whoever is asked or added must pass the task's four-eyes rule (the rep who prepared a
quote is never asked about it nor added to approve it), and a reviewer who approved and added someone after
them may not complete the task themselves later: someone else must.

Every write locks the contract's instance row, then the task row, then the audit chain head
(``tasks._load_row``), as every action on a task does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session, aliased

from models import Consultation, Instance, TaskRow, User, UserRole

from ..forms import FormInvalid, validate_submission
from ..runtime import Runtime
from . import audit
from .accounts import UserView, in_team
from .batch import approval_form
from .deployments import package_for
from .errors import Conflict, FourEyesViolation, InvalidInput, NotFound, PermissionDenied
from .notifications import _Batch
from .paging import Page
from .task_detail import TaskDetail, may_view_task
from .tasks import (
    _check_four_eyes,
    _check_may_act,
    _check_version,
    _deployment_of,
    _load_row,
    _require_open,
    four_eyes_conflict,
    get_task,
)

OPINION, AFTER = "opinion", "approver_after"
PENDING, ANSWERED, WITHDRAWN, ADDED = "pending", "answered", "withdrawn", "added"
MAX_QUESTION = 1000
MAX_ANSWER = 2000
MAX_ASKED = 10

_C = Consultation
_ASKER, _ASKED = aliased(User), aliased(User)
# active people (service accounts have no opinions and approve nothing here)
_PEOPLE = (select(User.id, User.username, User.display_name, User.email, User.language)
           .where(User.active.is_(True), User.service_account.is_(False)))
# what stops a completion: pending opinions, approvers added after someone (ix_consultations_task)
_OPEN_OF_TASK = (select(_C.kind, _C.asked_by_id, User.username).join(User, User.id == _C.asked_of_id)
                 .where(_C.task_id == bindparam("task_id"), _C.status.in_((PENDING, ADDED))).order_by(_C.id))
# the task page's panel: every signer of the task, oldest first (ix_consultations_task)
_OF_TASK = (select(_C.id, _C.kind, _C.status, _C.question, _C.answer, _C.agrees, _C.asked_at, _C.closed_at,
                   _ASKER.username, _ASKER.display_name, _ASKED.username, _ASKED.display_name)
            .join(_ASKER, _ASKER.id == _C.asked_by_id).join(_ASKED, _ASKED.id == _C.asked_of_id)
            .where(_C.task_id == bindparam("task_id")).order_by(_C.id))
_OPINION_COLUMNS = (_C.id, _C.status, _C.question, _C.answer, _C.agrees, _C.asked_at, _C.closed_at, _C.task_id,
                    TaskRow.name, TaskRow.status, Instance.business_key, Instance.customer_name, Instance.amount,
                    _ASKER.username, _ASKER.display_name, _ASKED.username, _ASKED.display_name)


def _opinions():
    return (select(*_OPINION_COLUMNS).join(TaskRow, TaskRow.id == _C.task_id)
            .join(Instance, Instance.id == _C.instance_id)
            .join(_ASKER, _ASKER.id == _C.asked_by_id).join(_ASKED, _ASKED.id == _C.asked_of_id))


@dataclass(frozen=True)
class Signer:
    """One opinion or added approver of a task, as its page shows it."""
    id: int
    kind: str  # opinion | approver_after
    status: str  # pending | answered | withdrawn | added
    question: str  # the question; for an approver after, the reviewer's comment
    answer: str | None
    agrees: bool | None
    asked_at: datetime
    closed_at: datetime | None
    asked_by: str
    asked_by_name: str
    asked_of: str
    asked_of_name: str


@dataclass(frozen=True)
class Opinion:
    """An opinion with its task and contract: the list "opinions asked of me" and an opinion's page."""
    id: int
    status: str
    question: str
    answer: str | None
    agrees: bool | None
    asked_at: datetime
    closed_at: datetime | None
    task_id: int
    task_name: str
    task_status: str
    business_key: str
    customer_name: str | None
    amount: Decimal | None
    asked_by: str
    asked_by_name: str
    asked_of: str
    asked_of_name: str

    @property
    def waiting(self) -> bool:
        """Still to be answered: pending, on a task that is still open."""
        return self.status == PENDING and self.task_status == "open"


@dataclass(frozen=True)
class Asked:
    task_id: int
    business_key: str
    asked: list[str]  # usernames
    opinion_ids: list[int]


@dataclass(frozen=True)
class Added:
    task_id: int
    business_key: str
    to: str  # username of the added approver
    to_name: str


# --- the check every completion makes ---------------------------------------------------------------------

def refuse_completion(s: Session, row, user: UserView) -> None:
    """Called under the task's locks before it is completed (``tasks._complete_once``) and before an approver
    is added: Conflict while opinions are pending; a four-eyes refusal to a reviewer who approved the task
    and added an approver after them (the added approver, or someone else with the role, must decide)."""
    found = s.connection().execute(_OPEN_OF_TASK, {"task_id": row.id}).all()
    if not found:
        return
    waiting = [r.username for r in found if r.kind == OPINION]
    if waiting:
        raise Conflict(f"'{row.name}' is waiting for opinions from {', '.join(waiting)}")
    if any(r.asked_by_id == user.id for r in found):
        raise FourEyesViolation(f"four eyes: {user.username} approved '{row.name}' and added an approver after "
                                f"them, so someone else must complete it")


# --- opinions (征询意见) -------------------------------------------------------------------------------------

def _usernames(to: Iterable[str] | str) -> list[str]:
    """Names from a list (a multiple select) whose entries may each hold several, split by commas or spaces."""
    items = [to] if isinstance(to, str) else list(to or [])
    names = [n for item in items for n in re.split(r"[\s,，、;]+", item or "") if n]
    return list(dict.fromkeys(names))


def _text(value: str | None) -> str:
    return (value or "").strip()


def _contract(s: Session, instance_id: int):
    return s.execute(select(Instance.business_key, Instance.customer_name, Instance.deployment_id, Instance.version)
                     .where(Instance.id == instance_id)).one()


def _four_eyes_for_opinion(s: Session, rt: Runtime, row, deployment_id: int, person) -> None:
    done = four_eyes_conflict(s, rt, row, deployment_id, person.id)
    if done is not None:
        raise FourEyesViolation(f"four eyes: {person.username} completed '{done}' on this contract, so they "
                                f"cannot be asked for an opinion on '{row.name}'")


def _notify(s: Session, rt: Runtime, now: datetime, row, inst, people: list[tuple[Any, str, dict]]) -> None:
    """One notification (and e-mail, for those with an address) per (person, kind, extra params)."""
    batch = _Batch(now, rt.business_tz)
    for person, kind, extra in people:
        batch.add(person, kind, task_id=row.id, name=row.name, role=row.role, due_at=row.due_at,
                  instance_id=row.instance_id, business_key=inst.business_key, customer=inst.customer_name, **extra)
    batch.write(s.connection())


def ask_opinions(rt: Runtime, task_id: int, user: UserView, to: Iterable[str] | str, question: str) -> Asked:
    """Ask ``to`` (usernames) for an opinion on the open task ``task_id``. The asker must be one who may
    complete the task; an unclaimed task is claimed for them (the answers come back to its holder). Raises
    NotFound, PermissionDenied (may not act on the task), FourEyesViolation (the asker, or one asked, is ruled
    out of the task by four eyes), Conflict (not open, or claimed by someone else) and InvalidInput."""
    question, names = _text(question), _usernames(to)
    errors = {}
    if not names:
        errors["to"] = "choose at least one person"
    elif len(names) > MAX_ASKED:
        errors["to"] = f"at most {MAX_ASKED} people at a time"
    if not question:
        errors["question"] = "this field is required"
    elif len(question) > MAX_QUESTION:
        errors["question"] = f"at most {MAX_QUESTION} characters"
    now = rt.clock.now()
    with rt.write() as s:
        row = _load_row(rt, s, task_id)  # instance row, then task row; the audit head comes last
        _require_open(s, row)
        inst = _contract(s, row.instance_id)
        _check_may_act(s, rt, row, inst.deployment_id, user, row.team)
        if errors:
            raise InvalidInput("the request for opinions has errors", errors)
        found = {p.username: p for p in s.execute(_PEOPLE.where(User.username.in_(names)))}
        missing = [n for n in names if n not in found]
        if missing:
            raise InvalidInput("no such user", {"to": f"no active user '{missing[0]}'"})
        if user.username in found:
            raise InvalidInput("nobody asks themselves", {"to": "ask someone other than yourself"})
        waiting = set(s.scalars(select(User.username).join(_C, _C.asked_of_id == User.id)
                                .where(_C.task_id == row.id, _C.status == PENDING)))
        again = [n for n in names if n in waiting]
        if again:
            raise InvalidInput("already asked", {"to": f"{again[0]} has not answered the earlier question yet"})
        people = [found[n] for n in names]
        for person in people:
            _four_eyes_for_opinion(s, rt, row, inst.deployment_id, person)
        if row.assignee_id is None:
            row.assignee_id, row.claimed_at = user.id, now
            audit.record(s, now, "claim", actor_id=user.id, actor=user.username, role=row.role,
                         instance_id=row.instance_id, task_id=row.id, spec_id=row.spec_id)
        made = [Consultation(kind=OPINION, task_id=row.id, instance_id=row.instance_id, asked_by_id=user.id,
                             asked_of_id=p.id, question=question, status=PENDING, asked_at=now) for p in people]
        s.add_all(made)
        s.flush()
        audit.record(s, now, "opinion_asked", actor_id=user.id, actor=user.username, role=row.role,
                     instance_id=row.instance_id, task_id=row.id, spec_id=row.spec_id,
                     data={"asked": names, "question": question, "opinions": [c.id for c in made]})
        _notify(s, rt, now, row, inst, [(p, "opinion_asked", {"by": user.username, "reason": question,
                                                               "opinion_id": c.id, "link": f"/opinions/{c.id}"})
                                        for p, c in zip(people, made, strict=True)])
        return Asked(row.id, inst.business_key, names, [c.id for c in made])


def _locked_opinion(rt: Runtime, s: Session, opinion_id: int) -> tuple[Consultation, TaskRow]:
    """The opinion and its task, read after the task's instance and task rows are locked."""
    task_id = s.scalar(select(_C.task_id).where(_C.id == opinion_id, _C.kind == OPINION))
    if task_id is None:
        raise NotFound(f"no opinion #{opinion_id}")
    row = _load_row(rt, s, task_id)
    return s.get(Consultation, opinion_id, populate_existing=True), row


def _closed(c: Consultation) -> Conflict:
    if c.status == ANSWERED:
        return Conflict(f"opinion #{c.id} was already answered")
    return Conflict(f"opinion #{c.id} was already withdrawn")


def answer_opinion(rt: Runtime, opinion_id: int, user: UserView, agrees: bool | None, answer: str) -> Opinion:
    """The person asked answers: agree or disagree, and why. Raises NotFound, PermissionDenied (asked of
    someone else), Conflict (answered or withdrawn already; the task is no longer open), FourEyesViolation
    and InvalidInput."""
    answer = _text(answer)
    errors = {}
    if agrees not in (True, False):
        errors["agrees"] = "choose agree or disagree"
    if not answer:
        errors["answer"] = "this field is required"
    elif len(answer) > MAX_ANSWER:
        errors["answer"] = f"at most {MAX_ANSWER} characters"
    now = rt.clock.now()
    with rt.write() as s:
        c, row = _locked_opinion(rt, s, opinion_id)
        if c.asked_of_id != user.id:
            raise PermissionDenied(f"opinion #{c.id} was not asked of {user.username}")
        if c.status != PENDING:
            raise _closed(c)
        _require_open(s, row)
        inst = _contract(s, row.instance_id)
        _four_eyes_for_opinion(s, rt, row, inst.deployment_id, user)
        if errors:
            raise InvalidInput("the answer has errors", errors)
        c.status, c.answer, c.agrees, c.closed_at = ANSWERED, answer, agrees, now
        asker = s.execute(_PEOPLE.where(User.id == c.asked_by_id)).first()
        asker_name = asker.username if asker is not None else s.scalar(
            select(User.username).where(User.id == c.asked_by_id))
        audit.record(s, now, "opinion_answered", actor_id=user.id, actor=user.username, instance_id=row.instance_id,
                     task_id=row.id, spec_id=row.spec_id,
                     data={"opinion": c.id, "asked_by": asker_name, "agrees": agrees, "answer": answer})
        if asker is not None:
            _notify(s, rt, now, row, inst, [(asker, "opinion_answered", {
                "by": user.username, "reason": answer, "agrees": agrees, "opinion_id": c.id})])
        s.flush()
        return _opinion_in(s, c.id)


def withdraw_opinion(rt: Runtime, opinion_id: int, user: UserView) -> Opinion:
    """The asker — or whoever may now complete the task (it may have changed hands) — withdraws a pending
    question; the task no longer waits for it. Raises NotFound, PermissionDenied and Conflict."""
    now = rt.clock.now()
    with rt.write() as s:
        c, row = _locked_opinion(rt, s, opinion_id)
        if c.asked_by_id != user.id:
            try:
                _check_may_act(s, rt, row, _deployment_of(s, row.instance_id), user, row.team, four_eyes=False)
            except (Conflict, PermissionDenied):
                raise PermissionDenied(f"only the one who asked for opinion #{c.id} or the holder of "
                                       f"'{row.name}' may withdraw it") from None
        if c.status != PENDING:
            raise _closed(c)
        _require_open(s, row)
        c.status, c.closed_at = WITHDRAWN, now
        asked = s.execute(_PEOPLE.where(User.id == c.asked_of_id)).first()
        asked_name = asked.username if asked is not None else s.scalar(
            select(User.username).where(User.id == c.asked_of_id))
        audit.record(s, now, "opinion_withdrawn", actor_id=user.id, actor=user.username, role=row.role,
                     instance_id=row.instance_id, task_id=row.id, spec_id=row.spec_id,
                     data={"opinion": c.id, "of": asked_name})
        if asked is not None:
            _notify(s, rt, now, row, _contract(s, row.instance_id), [(asked, "opinion_withdrawn", {
                "by": user.username, "opinion_id": c.id, "link": f"/opinions/{c.id}"})])
        s.flush()
        return _opinion_in(s, c.id)


def close_for_cancelled(s: Session, rt: Runtime, now: datetime, task_ids: list[int], actor: UserView) -> None:
    """Tasks a withdraw or return cancelled (``services/rewind.py``) wait for nobody: their pending opinions are
    withdrawn on the record and the people asked are told. An added approver's approval stays on the record."""
    if not task_ids:
        return
    pending = list(s.scalars(select(Consultation).where(_C.task_id.in_(task_ids), _C.kind == OPINION,
                                                        _C.status == PENDING).order_by(_C.id)))
    for c in pending:
        row = s.get(TaskRow, c.task_id)
        c.status, c.closed_at = WITHDRAWN, now
        asked = s.execute(_PEOPLE.where(User.id == c.asked_of_id)).first()
        asked_name = asked.username if asked is not None else s.scalar(
            select(User.username).where(User.id == c.asked_of_id))
        audit.record(s, now, "opinion_withdrawn", actor_id=actor.id, actor=actor.username, role=row.role,
                     instance_id=row.instance_id, task_id=row.id, spec_id=row.spec_id,
                     data={"opinion": c.id, "of": asked_name, "because": "cancelled"})
        if asked is not None:
            _notify(s, rt, now, row, _contract(s, row.instance_id), [(asked, "opinion_withdrawn", {
                "by": actor.username, "opinion_id": c.id, "link": f"/opinions/{c.id}"})])


# --- an approver after (后加签) -----------------------------------------------------------------------------

def approve_and_add_after(rt: Runtime, task_id: int, user: UserView, to_username: str, data: dict[str, Any],
                          expected_version: int | None = None) -> Added:
    """The reviewer approves the open approval task ``task_id`` (``data``: its form, whose decision must be
    ``approve``) and hands it to ``to_username``, who completes it. Checked as a completion is (may act, four
    eyes, the contract's version, the form, no opinion pending); the added approver must hold the task's role
    (in the contract's team), pass its four-eyes rule, and be someone other than the reviewer and anyone who
    already approved this task this way. Raises NotFound, PermissionDenied, FourEyesViolation, Conflict and
    InvalidInput."""
    to_username = _text(to_username)
    now = rt.clock.now()
    with rt.write() as s:
        row = _load_row(rt, s, task_id)
        _require_open(s, row)
        inst = _contract(s, row.instance_id)
        _check_may_act(s, rt, row, inst.deployment_id, user, row.team)
        refuse_completion(s, row, user)
        _check_version(row, inst.version, expected_version)
        package = package_for(rt, inst.deployment_id)
        form = approval_form(package.forms[row.form])
        if form is None:
            raise InvalidInput(f"'{row.name}' is not an approval; an approver can be added after an approval only")
        try:
            cleaned = validate_submission(package.forms[row.form], data or {}, package.validator(row.form))
        except FormInvalid as err:
            raise InvalidInput(f"the form '{row.name}' has errors", err.errors) from err
        if cleaned.get(form.decision) != "approve":
            raise InvalidInput(f"the form '{row.name}' has errors",
                               {form.decision: "an approver can be added after you approve; to reject or send "
                                               "back, complete the task"})
        target = s.execute(_PEOPLE.add_columns(User.team).where(User.username == to_username)).first()
        if target is None:
            raise InvalidInput("no such user", {"to": f"no active user '{to_username}'"})
        if target.id == user.id:
            raise InvalidInput("nobody adds themselves", {"to": "add someone other than yourself"})
        if s.scalar(select(UserRole.user_id).where(UserRole.user_id == target.id,
                                                   UserRole.role_code == row.role)) is None:
            raise InvalidInput("wrong role", {"to": f"{target.username} does not have the role '{row.role}'"})
        if not in_team(target.team, row.role, row.team):
            raise InvalidInput("wrong team", {"to": f"{target.username} is not in the team '{row.team}'"})
        if s.scalar(select(_C.id).where(_C.task_id == row.id, _C.kind == AFTER, _C.asked_by_id == target.id)
                    .limit(1)) is not None:
            raise InvalidInput("already approved", {"to": f"{target.username} already approved '{row.name}'"})
        _check_four_eyes(s, rt, row, inst.deployment_id, target.id, target.username)
        comment = _text(cleaned.get(form.comment)) if form.comment else ""
        row.assignee_id, row.claimed_at, row.on_behalf_of_id = target.id, now, None
        s.add(Consultation(kind=AFTER, task_id=row.id, instance_id=row.instance_id, asked_by_id=user.id,
                           asked_of_id=target.id, question=comment, status=ADDED, asked_at=now))
        audit.record(s, now, "countersign", actor_id=user.id, actor=user.username, role=row.role,
                     instance_id=row.instance_id, task_id=row.id, spec_id=row.spec_id,
                     data={"form": cleaned, "to": target.username})
        _notify(s, rt, now, row, inst, [(target, "approver_added", {"by": user.username, "reason": comment})])
        return Added(row.id, inst.business_key, target.username, target.display_name)


# --- reading -------------------------------------------------------------------------------------------------

def of_task(rt: Runtime, task_id: int) -> list[Signer]:
    """Every opinion and added approver of a task, oldest first: one indexed query."""
    with rt.read() as s:
        return [Signer(*r) for r in s.connection().execute(_OF_TASK, {"task_id": task_id})]


def _opinion_in(s: Session, opinion_id: int) -> Opinion:
    return Opinion(*s.execute(_opinions().where(_C.id == opinion_id)).one())


def _mine_where(user_id: int, show: str) -> list:
    if show == "pending":
        return [_C.asked_of_id == user_id, _C.status == PENDING, TaskRow.status == "open"]
    if show == "all":
        return [_C.asked_of_id == user_id, _C.kind == OPINION]
    raise InvalidInput(f"unknown list '{show}'", {"show": "must be pending or all"})


def pending_for(rt: Runtime, user: UserView, show: str = "pending", page: int = 1,
                per_page: int = 20) -> Page[Opinion]:
    """Opinions asked of ``user``, newest first: ``pending`` those still to answer, ``all`` every one."""
    where = _mine_where(user.id, show)
    page, per_page = max(1, page), min(max(1, per_page), 200)
    with rt.read() as s:
        total = s.scalar(select(func.count()).select_from(_C).join(TaskRow, TaskRow.id == _C.task_id)
                         .where(*where)) or 0
        rows = s.execute(_opinions().where(*where).order_by(_C.id.desc())
                         .offset((page - 1) * per_page).limit(per_page)).all()
    return Page([Opinion(*r) for r in rows], total, page, per_page)


def waiting_count(rt: Runtime, user_id: int) -> int:
    """How many opinions ``user_id`` still has to give (the navigation's count; ix_consultations_asked_of)."""
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(_C).join(TaskRow, TaskRow.id == _C.task_id)
                        .where(*_mine_where(user_id, "pending"))) or 0


@dataclass(frozen=True)
class OpinionPage:
    opinion: Opinion
    data: dict[str, Any]  # the contract's business data, for the one asked (who may not open the task)
    may_answer: bool
    may_withdraw: bool


def opinion_page(rt: Runtime, opinion_id: int, user: UserView) -> OpinionPage:
    """An opinion with the contract it is about, for the one asked, the asker and whoever may see the task."""
    from . import instances

    with rt.read() as s:
        found = s.execute(_opinions().add_columns(TaskRow.team).where(_C.id == opinion_id, _C.kind == OPINION)).first()
    if found is None:
        raise NotFound(f"no opinion #{opinion_id}")
    opinion, team = Opinion(*found[:-1]), found[-1]
    item = get_task(rt, opinion.task_id)
    mine = opinion.asked_of == user.username
    if not (mine or opinion.asked_by == user.username or may_view_task(user, item, team)):
        raise PermissionDenied(f"opinion #{opinion_id} was not asked of {user.username}")
    holder = item.assignee == user.username or (item.assignee is None and item.role in user.roles
                                                and in_team(user.team, item.role, team))
    return OpinionPage(opinion, instances.instance_data(rt, item.instance_id), mine and opinion.waiting,
                       opinion.waiting and (opinion.asked_by == user.username or holder))


def people(rt: Runtime) -> list[tuple[str, str]]:
    """Everyone who can be asked for an opinion: (username, display name)."""
    with rt.read() as s:
        return [(r.username, r.display_name) for r in s.execute(_PEOPLE.order_by(User.username))]


@dataclass(frozen=True)
class Panel:
    """What the task page shows of its added signers, and what the viewer may do there."""
    signers: list[Signer]
    waiting: list[str]  # usernames whose opinion the task waits for
    added_by: Signer | None  # the holder was added by this reviewer after their approval
    may_ask: bool
    may_add: bool
    may_withdraw: bool  # any pending opinion (the asker's own are always theirs to withdraw)
    people: list[tuple[str, str]]  # whom one may ask
    candidates: list[UserView]  # whom one may add after oneself
    decision_field: str | None
    comment_field: str | None


def panel(rt: Runtime, detail: TaskDetail, user: UserView) -> Panel:
    """The task page's panel: one indexed query, plus the list of people for whoever may ask."""
    task = detail.task
    signers = of_task(rt, task.id)
    waiting = [x.asked_of for x in signers if x.kind == OPINION and x.status == PENDING]
    approved_here = {x.asked_by for x in signers if x.kind == AFTER}
    added = [x for x in signers if x.kind == AFTER and x.asked_of == task.assignee]
    may_act = (task.status == "open" and detail.may_complete and detail.four_eyes_conflict is None
               and user.username not in approved_here)
    form = approval_form(detail.schema) if may_act else None
    candidates = [u for u in detail.candidates if u.username != user.username and u.username not in approved_here]
    return Panel(signers, waiting, added[-1] if added else None, may_act, bool(form and candidates and not waiting),
                 task.status == "open" and detail.may_complete, people(rt) if may_act else [],
                 candidates if form else [], form.decision if form else None, form.comment if form else None)
