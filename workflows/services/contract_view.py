"""A contract (process instance) as its page shows it, and who may look at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from models import AuditEvent, Instance, TaskRow

from ..runtime import Runtime
from . import instances, remind
from .accounts import SUPERVISORY_ROLES, UserView, in_team, supervises
from .deployments import package_for
from .errors import NotFound, PermissionDenied
from .paging import Page
from .task_detail import HistoryEntry
from .tasks import TaskItem, open_tasks_of_instance

HISTORY_PER_PAGE = 25


@dataclass
class ContractView:
    instance: instances.InstanceView
    process_name: str
    data: dict[str, Any]
    open_tasks: list[TaskItem]
    history: list[HistoryEntry]
    history_total: int
    page: int
    pages: int
    task_names: dict[str, str]
    related: list[tuple[str, str, str]]  # business key, process key, status of complaints etc.
    reminders: dict[int, remind.RemindState] = field(default_factory=dict)  # per open task id


# after-sales handles complaints about delivered contracts, so it may read those
AFTER_DELIVERY_STAGES = ("delivery", "after_sales", "collection", "done")


def may_view(rt: Runtime, s, user: UserView, inst: Instance) -> bool:
    if user.roles & {"compliance", "admin", "process_owner"} or supervises(user, inst.team):
        return True
    if inst.started_by_id == user.id:
        return True
    if "after_sales" in user.roles and inst.stage in AFTER_DELIVERY_STAGES:
        return True
    roles = sorted(r for r in user.roles if in_team(user.team, r, inst.team))
    if roles and s.scalar(select(TaskRow.id).where(TaskRow.instance_id == inst.id, TaskRow.status == "open",
                                                   TaskRow.role.in_(roles)).limit(1)) is not None:
        return True
    # whoever acted on it, or on a complaint about it (after-sales must read the contract they handle)
    related = select(Instance.id).where(Instance.related_key == inst.business_key)
    return s.scalar(select(AuditEvent.id).where(
        (AuditEvent.instance_id == inst.id) | AuditEvent.instance_id.in_(related),
        AuditEvent.actor_id == user.id).limit(1)) is not None


def contract_view(rt: Runtime, key: str, user: UserView, page: int = 1) -> ContractView:
    with rt.read() as s:
        inst = s.scalar(select(Instance).where(Instance.business_key == key))
        if inst is None:
            raise NotFound(f"no contract '{key}'")
        if not may_view(rt, s, user, inst):
            raise PermissionDenied(f"{user.username} has no part in {key}")
        total = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.instance_id == inst.id)) or 0
        pages = max(1, -(-total // HISTORY_PER_PAGE))
        page = min(max(1, page), pages)
        rows = s.execute(select(AuditEvent.at, AuditEvent.actor, AuditEvent.role, AuditEvent.action,
                                AuditEvent.spec_id, AuditEvent.data).where(AuditEvent.instance_id == inst.id)
                         .order_by(AuditEvent.id.desc()).offset((page - 1) * HISTORY_PER_PAGE)
                         .limit(HISTORY_PER_PAGE)).all()
        related = s.execute(select(Instance.business_key, Instance.process_key, Instance.status)
                            .where(Instance.related_key == key).order_by(Instance.id)).all()
        deployment_id, started_by_id, team = inst.deployment_id, inst.started_by_id, inst.team
    package = package_for(rt, deployment_id)
    names = package.node_names
    view = instances.get_instance(rt, key)
    open_tasks = open_tasks_of_instance(rt, view.id)
    with rt.read() as s:
        reminders = remind.states(s, rt, user, view.id, started_by_id, team, open_tasks)
    return ContractView(view, package.main.name, instances.instance_data(rt, key), open_tasks,
                        [HistoryEntry(*r) for r in rows], total, page, pages, names, [tuple(r) for r in related],
                        reminders)


@dataclass(frozen=True)
class ContractRow:
    business_key: str
    process_key: str
    status: str
    stage: str | None
    customer_name: str | None
    amount: Any
    started_at: Any
    updated_at: Any
    end_event: str | None



def list_contracts(rt: Runtime, user: UserView, page: int = 1, per_page: int = 20, q: str | None = None,
                   status: str | None = None) -> Page[ContractRow]:
    """Contracts the user may see: all for oversight roles, the team's for supervisors, else those they
    started or acted on. Newest activity first; searched by key or customer."""
    where = []
    if user.roles & {"director", "compliance", "admin", "process_owner"}:
        pass
    elif user.roles & SUPERVISORY_ROLES and user.team:
        where.append(Instance.team == user.team)
    elif not user.roles & SUPERVISORY_ROLES:
        acted = select(AuditEvent.instance_id).where(AuditEvent.actor_id == user.id)
        where.append((Instance.started_by_id == user.id) | Instance.id.in_(acted))
    if q:
        where.append(Instance.business_key.contains(q, autoescape=True)
                     | Instance.customer_name.contains(q, autoescape=True))
    if status:
        where.append(Instance.status == status)
    page, per_page = max(1, page), min(max(1, per_page), 100)
    with rt.read() as s:
        total = s.scalar(select(func.count()).select_from(Instance).where(*where)) or 0
        rows = s.execute(select(Instance.business_key, Instance.process_key, Instance.status, Instance.stage,
                                Instance.customer_name, Instance.amount, Instance.started_at, Instance.updated_at,
                                Instance.end_event).where(*where)
                         .order_by(Instance.updated_at.desc(), Instance.id.desc())
                         .offset((page - 1) * per_page).limit(per_page)).all()
    return Page([ContractRow(*r) for r in rows], total, page, per_page)
