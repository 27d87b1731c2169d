"""Fills the business records of instances that have none: those that ran before migration 0011 added the
records (``lvyue backfill-records``). Each instance's stored workflow is read once and its current data given
to ``records.project`` as if its last step had just run, oldest instance first, ownership disputes after the
contracts (in the order they ended), so the first rep who quoted a customer owns it. Instances that already
have records are left alone: running it twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import exists, or_, select

from models import Complaint, Instance, OwnershipChange, Quote

from ..engine import runner
from ..runtime import Runtime
from . import records
from .deployments import package_for
from .progress import LiveInstance, load_workflow

BATCH = 200


@dataclass
class BackfillReport:
    instances: int = 0  # looked at
    filled: int = 0  # given records (the rest have none to give yet: a quote not submitted)


def _missing(process_key: str):
    if process_key == "complaint":
        return ~exists().where(Complaint.instance_id == Instance.id)
    return ~exists().where(Quote.instance_id == Instance.id)


def backfill(rt: Runtime, progress: Callable[[int], None] | None = None) -> BackfillReport:
    report = BackfillReport()
    with rt.read() as s:
        ids = list(s.scalars(select(Instance.id).where(or_(
            (Instance.process_key == "quote_to_cash") & _missing("quote_to_cash"),
            (Instance.process_key == "complaint") & _missing("complaint"))).order_by(Instance.started_at, Instance.id)))
        ids += list(s.scalars(select(Instance.id).where(Instance.process_key == "ownership_dispute",
                                                        Instance.status == "completed",
                                                        ~exists().where(OwnershipChange.instance_id == Instance.id))
                              .order_by(Instance.completed_at, Instance.id)))
    for start in range(0, len(ids), BATCH):
        for instance_id in ids[start:start + BATCH]:
            report.instances += 1
            report.filled += _fill(rt, instance_id)
            if progress is not None:
                progress(1)
    return report


def _fill(rt: Runtime, instance_id: int) -> int:
    with rt.write() as s:
        inst = s.get(Instance, instance_id)
        package = package_for(rt, inst.deployment_id)
        live = LiveInstance(inst.id, inst.version, inst.process_key, inst.deployment_id, inst.stage,
                            inst.customer_name, inst.amount, inst.team)
        data = runner.current_data(load_workflow(rt, live, package, s))
        completed = inst.status == "completed"
        outcome = package.processes[inst.process_key].outcomes.get(inst.end_event) if inst.end_event else None
        # when it started: the customer and quote of an old contract date from then, not from today
        records.project(s, instance_id=inst.id, process_key=inst.process_key, team=inst.team, data=data,
                        now=inst.completed_at if inst.process_key == "ownership_dispute" else inst.started_at,
                        actor_id=None, completed=completed, stage=inst.stage, outcome=outcome)
        if inst.process_key == "ownership_dispute":
            return 1
        return int(s.scalar(select(exists().where(~_missing(inst.process_key), Instance.id == inst.id))))
