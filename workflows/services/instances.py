"""Starting process instances and reading them back."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from SpiffWorkflow.exceptions import SpiffWorkflowException
from sqlalchemy import func, insert, select
from sqlalchemy.exc import IntegrityError

from models import Deployment, Instance, Step, TaskRow

from ..clock import using_clock
from ..engine import runner
from ..engine.sandbox import SandboxViolation
from ..forms import FormInvalid, validate_submission
from ..runtime import Runtime
from . import audit
from .accounts import UserView
from .deployments import latest_deployment_id, package_for, script_engine_for
from .errors import InvalidInput, NotFound, PermissionDenied, ProcessError
from .progress import HandTo, LiveInstance, describe_engine_error, persist_step

KEY_PREFIX = {"quote_to_cash": "Q", "complaint": "C", "ownership_dispute": "D"}
BUSINESS_KEY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")


@dataclass(frozen=True)
class StartResult:
    instance_id: int
    business_key: str
    version: int
    status: str
    open_task_ids: list[int]
    handed_to: str | None = None  # a new deal for an existing customer: the owner's display name, who has it


def start_instance(rt: Runtime, process_key: str, user: UserView, data: dict[str, Any] | None = None,
                   business_key: str | None = None, claim_first: bool = False) -> StartResult:
    """``claim_first``: the first task for one of the starter's roles is theirs at once (the web start page)."""
    deployment_id = latest_deployment_id(rt, process_key)
    package = package_for(rt, deployment_id)
    process = package.main
    allowed = set(process.starter_roles)
    if not (allowed & user.roles):
        raise PermissionDenied(f"starting '{process.name}' needs one of the roles: {', '.join(sorted(allowed))}")
    data = dict(data or {})
    if process.start_form:
        try:
            data = validate_submission(package.forms[process.start_form], data)
        except FormInvalid as err:
            raise InvalidInput("the start form has errors", err.errors) from err
    elif data:
        allowed_keys = {"customer_name"}
        extra = set(data) - allowed_keys
        if extra:
            raise InvalidInput("unknown start data", {k: "this field is not part of the form" for k in extra})
        if not isinstance(data.get("customer_name", ""), str):
            raise InvalidInput("the start form has errors", {"customer_name": "must be text"})
        # the column holds 200 characters, and PostgreSQL no NUL: either would fail the insert with a 500
        if len(data.get("customer_name", "")) > 200:
            raise InvalidInput("the start form has errors", {"customer_name": "must have at most 200 characters"})
        if "\x00" in data.get("customer_name", ""):
            raise InvalidInput("the start form has errors", {"customer_name": "must not contain control characters"})
    if business_key is not None and not BUSINESS_KEY_RE.fullmatch(business_key):
        raise InvalidInput("invalid business key", {"business_key": "1 to 120 letters, digits, '.', '_' or '-'"})
    for attempt in range(5):
        try:
            return _start_once(rt, package, deployment_id, process_key, user, data, business_key, claim_first)
        except IntegrityError:
            if business_key is not None:
                raise InvalidInput("business key taken", {"business_key": f"'{business_key}' is taken"}) from None
            if attempt == 4:
                raise
    raise AssertionError("unreachable")


def _start_once(rt: Runtime, package, deployment_id: int, process_key: str, user: UserView, data: dict[str, Any],
                business_key: str | None, claim_first: bool = False) -> StartResult:
    now = rt.clock.now()
    with rt.write() as s:
        related = data.get("contract_key")
        if related is not None and not _may_refer_to(rt, s, user, related):
            # the same answer whether the contract is missing or not the starter's to see
            raise InvalidInput("no such contract", {"contract_key": f"no contract with the key '{related}'"})
        if business_key and s.scalar(select(Instance.id).where(Instance.business_key == business_key)):
            raise InvalidInput("business key taken", {"business_key": f"'{business_key}' is taken"})
        team, hand_to = user.team, None
        if process_key == "ownership_dispute":  # however it is started: the customer's row is locked, then checked
            from .customers import dispute_start_data

            data = dispute_start_data(s, user, data)
        elif process_key == "quote_to_cash" and isinstance(data.get("customer_name"), str):
            from .customers import owner_for_new_deal

            owner = owner_for_new_deal(s, data["customer_name"], user)
            if owner is not None:  # a new deal for an existing customer goes to its owner, in the owner's team
                team, hand_to = owner.team, HandTo(owner, "customer owner / 客户归属")
        workflow = runner.new_workflow(package, script_engine_for(rt), data)
        try:
            with using_clock(rt.clock):
                stepped = runner.step(workflow)
        except (SpiffWorkflowException, SandboxViolation) as err:
            raise ProcessError(describe_engine_error(err)) from err
        key = business_key or _next_key(s, process_key, now.year)
        customer = data.get("customer_name") if isinstance(data.get("customer_name"), str) else None
        instance_id = s.scalar(insert(Instance).returning(Instance.id).values(
            deployment_id=deployment_id, process_key=process_key, status="running", business_key=key,
            started_by_id=user.id, started_at=now, updated_at=now, state="{}", version=1, related_key=related,
            customer_name=customer, team=team))
        audit.record(s, now, "start", actor_id=user.id, actor=user.username, instance_id=instance_id,
                     data={"process_key": process_key, "deployment_id": deployment_id, "business_key": key,
                           "data": data, "effects": audit.changes(data, runner.current_data(workflow))})
        inst = LiveInstance(instance_id, 1, process_key, deployment_id, customer_name=customer, team=team)
        outcome = persist_step(rt, s, inst, package, workflow, stepped, now, had_timers=False, actor=user,
                               claim_first=claim_first, hand_to=hand_to)
        result = StartResult(instance_id, key, outcome.version, outcome.status, outcome.new_task_ids,
                             hand_to.user.display_name if hand_to is not None else None)
    rt.keep_workflow(result.instance_id, result.version, workflow)
    return result


def _may_refer_to(rt: Runtime, s, user: UserView, key: str) -> bool:
    from .contract_view import may_view

    contract = s.scalar(select(Instance).where(Instance.business_key == key))
    return contract is not None and may_view(rt, s, user, contract)


def _next_key(s, process_key: str, year: int) -> str:
    prefix = f"{KEY_PREFIX.get(process_key, process_key[:3].upper())}-{year}-"
    count = s.scalar(select(func.count()).select_from(Instance).where(Instance.business_key.like(prefix + "%")))
    seq = (count or 0) + 1
    while True:
        key = f"{prefix}{seq:05d}"
        if s.scalar(select(Instance.id).where(Instance.business_key == key)) is None:
            return key
        seq += 1


@dataclass(frozen=True)
class InstanceView:
    id: int
    business_key: str
    process_key: str
    deployment_version: int
    status: str
    stage: str | None
    end_event: str | None
    customer_name: str | None
    amount: Any
    version: int
    open_tasks: list[tuple[int, str, str, str | None]]  # id, spec id, role, assignee username
    path: list[str]  # spec ids of finished steps, in order


def get_instance(rt: Runtime, key: str | int) -> InstanceView:
    from models import User

    with rt.read() as s:
        q = select(Instance).where(Instance.id == key if isinstance(key, int) else Instance.business_key == key)
        inst = s.scalar(q)
        if inst is None:
            raise NotFound(f"no instance '{key}'")
        version = s.scalar(select(Deployment.version).where(Deployment.id == inst.deployment_id))
        rows = s.execute(select(TaskRow.id, TaskRow.spec_id, TaskRow.role, User.username)
                         .outerjoin(User, User.id == TaskRow.assignee_id)
                         .where(TaskRow.instance_id == inst.id, TaskRow.status == "open")
                         .order_by(TaskRow.id)).all()
        path = list(s.scalars(select(Step.spec_id).where(Step.instance_id == inst.id, Step.state == "COMPLETED")
                              .order_by(Step.finished_at, Step.id)))
        return InstanceView(inst.id, inst.business_key, inst.process_key, version or 0, inst.status, inst.stage,
                            inst.end_event, inst.customer_name, inst.amount, inst.version,
                            [tuple(r) for r in rows], path)


def instance_data(rt: Runtime, key: str | int) -> dict[str, Any]:
    """The business data of an instance as it stands (deserializes one workflow)."""
    from .progress import load_workflow, read_live_instance

    with rt.read() as s:
        live = read_live_instance(s, Instance.id == key if isinstance(key, int) else Instance.business_key == key)
        if live is None:
            raise NotFound(f"no instance '{key}'")
        workflow = load_workflow(rt, live, package_for(rt, live.deployment_id), s)
        data = dict(runner.current_data(workflow))
        rt.keep_workflow(live.id, live.version, workflow)
        return data
