"""Contract amendments (合同修订): a signed contract changed before it is accepted goes through review again.

The process says where (process properties ``amendmentStep``, ``amendmentOpensAfter``, ``amendmentClosedBy``,
see ``engine/package.py``): for quote_to_cash an amendment is possible once the customer has signed and until
the customer accepts the delivery (collection starts then); it moves the token back to ``prepare_quote`` with
the contract's data, so the rep changes the quote and everything after it (reviews by the decision table,
contract draft with a payment plan that must fit the new amount, checks, both signatures, filing) is done
again, under the same rules. The quote revisions and the contract record follow from the process data
(``records.py``); the amendment itself is an audited action with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import AuditEvent, Contract, Instance, TaskRow

from ..runtime import Runtime
from . import audit
from .accounts import UserView, supervises
from .deployments import package_for
from .errors import Conflict, InvalidInput, NotFound, PermissionDenied
from .rewind import MAX_COMMENT, Moved, _locked_row, _move, _passed, _record_cancels


@dataclass(frozen=True)
class AmendState:
    allowed: bool
    reason: str | None = None  # why not, for the page (None when the process has no amendments)


def _check(s: Session, rt: Runtime, inst: Instance, user: UserView):
    """The package and the amendment settings, or the refusal."""
    package = package_for(rt, inst.deployment_id)
    info = package.processes[inst.process_key]
    if info.amendment is None:
        raise Conflict("this process has no amendments")
    rep = s.scalar(select(Contract.rep_id).where(Contract.instance_id == inst.id))
    if user.id not in (rep, inst.started_by_id) and not supervises(user, inst.team):
        raise PermissionDenied("only the contract's sales rep or a supervisor of the team may amend it")
    if inst.status != "running":
        raise Conflict(f"the contract is {inst.status}; it can no longer be amended")
    passed = _passed(s, inst.id)
    names = package.node_names
    step, opens = info.amendment.step, info.amendment.opens_after
    if opens not in passed:
        raise Conflict(f"'{names.get(opens, opens)}' is not done yet: before that, send the contract back to "
                       f"'{names.get(step, step)}' instead of amending it")
    closed = next((c for c in info.amendment.closed_by if c in passed), None)
    if closed is not None:
        raise Conflict(f"'{names.get(closed, closed)}' is done: the contract can no longer be amended")
    def last(*conditions) -> int:
        return s.scalar(select(func.max(AuditEvent.id)).where(AuditEvent.instance_id == inst.id, *conditions)) or 0

    if last(AuditEvent.action == "amend") > last(AuditEvent.action == "complete", AuditEvent.spec_id == opens):
        raise Conflict("an amendment of this contract is under way: it must be signed before the next one")
    return package, info


def amend_state(rt: Runtime, instance_id: int, user: UserView) -> AmendState:
    """May this user amend the contract now? (For the contract page; the action checks again.)"""
    with rt.read() as s:
        inst = s.get(Instance, instance_id)
        if inst is None or inst.status != "running":
            return AmendState(False)
        try:
            _check(s, rt, inst, user)
        except PermissionDenied:
            return AmendState(False)
        except Conflict as err:
            return AmendState(False, None if err.message == "this process has no amendments" else err.message)
    return AmendState(True)


def amend(rt: Runtime, key: str, user: UserView, reason: str, expected_version: int | None = None) -> Moved:
    """Reopen the signed contract ``key`` at its amendment step, with the reason for everyone after."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a reason is required", {"reason": "say what changes in the contract and why"})
    if len(reason) > MAX_COMMENT:
        raise InvalidInput("the reason is too long", {"reason": f"at most {MAX_COMMENT} characters"})
    now = rt.clock.now()
    with rt.write() as s:
        inst_id = s.scalar(select(Instance.id).where(Instance.business_key == key))
        if inst_id is None:
            raise NotFound(f"no contract '{key}'")
        _check(s, rt, s.get(Instance, inst_id), user)  # the refusal that matters before "no open step"
        task_id = s.scalar(select(TaskRow.id).where(TaskRow.instance_id == inst_id, TaskRow.status == "open")
                           .order_by(TaskRow.id).limit(1))
        if task_id is None:
            raise Conflict("the contract has no open step to amend from; wait for its timers")
        row = _locked_row(rt, s, task_id)  # locks the instance
        inst = s.get(Instance, inst_id)
        s.refresh(inst)
        if expected_version is not None and expected_version != inst.version:
            raise Conflict("the contract has moved on since this page was loaded; reload it and try again")
        package, info = _check(s, rt, inst, user)
        number = 1 + (s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.instance_id == inst_id, AuditEvent.action == "amend")) or 0)
        extra = {"amendment_no": number, "amendment_reason": reason, "customer_signed_on": None}
        moved, live, workflow = _move(rt, s, row, package, info.amendment.step, user, now,
                                      data_from=row.task_uuid, extra_data=extra)
        step_name = package.node_names.get(info.amendment.step, info.amendment.step)
        audit.record(s, now, "amend", actor_id=user.id, actor=user.username, instance_id=inst_id,
                     data={"amendment_no": number, "reason": reason, "to": info.amendment.step, "to_name": step_name,
                           "cancelled": moved.cancelled_task_ids, "opened": moved.new_task_ids})
        _record_cancels(s, now, inst_id, moved)
    rt.keep_workflow(live.id, live.version, workflow)
    return moved
