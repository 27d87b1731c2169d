"""Business records written from the process, and the rules a submission must keep to make them.

``check_completion`` runs after a user task's submission has been merged into the task data and before the
engine goes on: a payment plan must add up to the contract amount, a payment may not exceed what is still
open, and a rep may not quote another rep's customer (抢单; they ask the director instead). ``project`` runs
inside every step's transaction (start, completion, timer, return) and writes the customer, the quote
revisions, the contract with its installments and payments, and the complaints from the process data, so the
records always say what the process decided and nothing edits them behind its back. It reads and writes a
handful of rows by indexed keys and does nothing for data it does not know.

The variables it reads are the process's data contract (bpmn/README.md, "Records"): ``customer_name``,
``line_items``/``subtotal``/``discount_pct``/``amount`` (quote), ``contract_no``/``payment_plan`` (contract),
``customer_signed_on``, ``delivered_on``, ``acceptance``, ``payments`` (collection); complaints:
``contract_key``, ``severity``, ``acceptance_decision``, ``satisfaction``; ownership disputes:
``dispute_decision``.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from models import Complaint, Contract, Customer, Installment, Instance, OwnershipChange, Payment, Quote, TaskRow, User

from .errors import InvalidInput

CENT = Decimal("0.01")
# the customer signed (and did not sign an amendment yet): the installments are owed; fulfilled ones are all paid
OWED_STATUSES = ("signed", "delivered", "fulfilled")
STILL_OWED_STATUSES = ("signed", "delivered")
APPROVED_STAGES = ("contract", "delivery", "collection", "after_sales")


def name_key(name: str) -> str:
    """One customer per name, whatever the case, spacing, width and punctuation: 'ACME  Ltd.', 'ＡＣＭＥ Ltd' and
    'acme ltd' are one customer, as are '华信（上海）' and '华信(上海)'; invisible characters do not count."""
    text = unicodedata.normalize("NFKC", name)
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text
                   if unicodedata.category(ch) not in ("Cf", "Cc"))
    return " ".join(text.split()).casefold()[:200]


def money(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value)).quantize(CENT)
    except (InvalidOperation, ValueError):
        return None


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def fmt(value: Decimal) -> str:
    return f"{value:,.2f}"


# -- checks before the engine goes on ----------------------------------------------------------------------


def check_completion(s: Session, process_key: str, role: str | None, submitted: dict[str, Any],
                     data: dict[str, Any], user_id: int, form_name: str, on_behalf_of_id: int | None = None,
                     instance_id: int | None = None) -> None:
    """``submitted``: the cleaned form; ``data``: the task data with it merged in; ``on_behalf_of_id``: the away
    user a substitute completes the task for (their customers are the substitute's to quote on their behalf).
    Raises ``InvalidInput`` with the field that is wrong, like a form error, so the page keeps what was typed."""
    errors: dict[str, str] = {}
    if "payment_plan" in submitted:
        problem = payment_plan_problem(submitted.get("payment_plan"), data.get("amount"))
        if problem:
            errors["payment_plan"] = problem
    if "amount_received" in submitted:
        problem = payment_problem(submitted.get("amount_received"), data)
        if problem:
            errors["amount_received"] = problem
    if ("customer_name" in submitted and role == "sales_rep" and process_key == "quote_to_cash"
            and not _quoted_here(s, instance_id, submitted.get("customer_name"))):
        problem = ownership_problem(s, submitted.get("customer_name"), user_id, on_behalf_of_id)
        if problem:
            errors["customer_name"] = problem
    if errors:
        raise InvalidInput(f"the form '{form_name}' has errors", errors)


def payment_plan_problem(plan: Any, total: Any) -> str | None:
    total = money(total)
    if not isinstance(plan, list) or total is None:
        return None
    amounts = [money(item.get("amount")) if isinstance(item, dict) else None for item in plan]
    if any(a is None or a <= 0 for a in amounts):
        return "every installment needs an amount above zero"
    planned = sum(amounts, Decimal("0.00"))
    if planned != total:
        gap = total - planned
        return (f"the installments add up to {fmt(planned)} but the contract amount is {fmt(total)} "
                f"({'short by' if gap > 0 else 'over by'} {fmt(abs(gap))})")
    days = [_day(item.get("due_date")) for item in plan]
    if all(days) and days != sorted(days):
        return "the installments must be in order of their due dates"
    return None


def payment_problem(received: Any, data: dict[str, Any]) -> str | None:
    amount, total, paid = money(received), money(data.get("amount")), money(data.get("paid_total")) or Decimal(0)
    if amount is None or total is None:
        return None
    if amount <= 0:
        return "the amount received must be above zero"
    open_amount = total - paid
    if amount > open_amount:
        return (f"the amount received ({fmt(amount)}) is more than what is still open on the contract "
                f"({fmt(open_amount)})")
    return None


def _quoted_here(s: Session, instance_id: int | None, name: Any) -> bool:
    """This deal was already quoted for that customer: a resubmission stays with the deal even if the customer
    has changed hands since (a dispute decides about new deals, not one under way)."""
    if instance_id is None or not isinstance(name, str):
        return False
    latest = s.scalar(select(Customer.name_key).join(Quote, Quote.customer_id == Customer.id)
                      .where(Quote.instance_id == instance_id).order_by(Quote.revision.desc()).limit(1))
    return latest is not None and latest == name_key(name)


def ownership_problem(s: Session, name: Any, user_id: int, on_behalf_of_id: int | None = None) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return None
    row = s.execute(select(Customer.name, Customer.owner_id, User.display_name)
                    .outerjoin(User, User.id == Customer.owner_id)
                    .where(Customer.name_key == name_key(name))).first()
    if row is None or row.owner_id in (None, user_id, on_behalf_of_id):
        return None
    return (f"the customer '{row.name}' belongs to {row.display_name}; ask the director for it with an ownership "
            "request instead of quoting it")


# -- records from the process data -------------------------------------------------------------------------


def project(s: Session, *, instance_id: int, process_key: str, team: str | None, data: dict[str, Any],
            now: datetime, actor_id: int | None, completed: bool, stage: str | None, outcome: str | None) -> None:
    if process_key == "quote_to_cash":
        _project_contract(s, instance_id, team, data, now, actor_id, completed, stage, outcome)
    elif process_key == "complaint":
        _project_complaint(s, instance_id, data, now, completed)
    elif process_key == "ownership_dispute" and completed:
        _project_dispute(s, instance_id, data, now, actor_id)


def ensure_customer(s: Session, name: str, owner_id: int | None, team: str | None, now: datetime,
                    instance_id: int | None, actor_id: int | None, reason: str) -> Customer:
    """The customer of that name; a new one is owned by ``owner_id`` (recorded with ``reason``)."""
    customer = s.scalar(select(Customer).where(Customer.name_key == name_key(name)))
    if customer is None:
        customer = Customer(name=" ".join(name.split())[:200], name_key=name_key(name), owner_id=owner_id, team=team,
                            created_at=now)
        s.add(customer)
        s.flush()
        if owner_id is not None:  # a customer first met without an owner (a complaint) has had no change of owner
            s.add(OwnershipChange(customer_id=customer.id, from_owner_id=None, to_owner_id=owner_id, reason=reason,
                                  instance_id=instance_id, actor_id=actor_id, at=now))
    elif customer.owner_id is None and owner_id is not None:
        customer.owner_id, customer.team = owner_id, team
        s.add(OwnershipChange(customer_id=customer.id, from_owner_id=None, to_owner_id=owner_id, reason=reason,
                              instance_id=instance_id, actor_id=actor_id, at=now))
    return customer


def _started_by(s: Session, instance_id: int) -> int | None:
    return s.scalar(select(Instance.started_by_id).where(Instance.id == instance_id))


def _deal_rep(s: Session, instance_id: int) -> int | None:
    """The rep whose deal this is: who last completed a sales-rep step (the away rep, when a substitute did it
    for them), else who started it. Never a reviewer or finance, whoever's step this is."""
    row = s.execute(select(TaskRow.completed_by_id, TaskRow.on_behalf_of_id).where(
        TaskRow.instance_id == instance_id, TaskRow.role == "sales_rep", TaskRow.status == "completed")
        .order_by(TaskRow.completed_at.desc(), TaskRow.id.desc()).limit(1)).first()
    if row is not None:
        return row.on_behalf_of_id or row.completed_by_id
    return _started_by(s, instance_id)


def _lines(items: Any) -> list[dict[str, str]] | None:
    if not isinstance(items, list):
        return None
    out = []
    for item in items:
        if not isinstance(item, dict):
            return None
        price = money(item.get("unit_price"))
        qty = item.get("quantity")
        if price is None or not isinstance(qty, int):
            return None
        out.append({"product": str(item.get("product", "")), "quantity": qty, "unit_price": str(price),
                    "line_total": str((price * qty).quantize(CENT))})
    return out


def _project_contract(s: Session, instance_id: int, team: str | None, data: dict[str, Any], now: datetime,
                      actor_id: int | None, completed: bool, stage: str | None, outcome: str | None) -> None:
    name = data.get("customer_name")
    lines, amount, subtotal = _lines(data.get("line_items")), money(data.get("amount")), money(data.get("subtotal"))
    if not isinstance(name, str) or not name.strip() or lines is None or amount is None or subtotal is None:
        return  # no quote submitted yet
    row = s.execute(select(Quote, Customer.name_key).join(Customer, Customer.id == Quote.customer_id)
                    .where(Quote.instance_id == instance_id).order_by(Quote.revision.desc()).limit(1)).first()
    latest, latest_key = (row[0], row[1]) if row else (None, None)
    discount = money(data.get("discount_pct")) or Decimal("0.00")
    encoded = json.dumps(lines, ensure_ascii=False, sort_keys=True)
    if latest is None or latest_key != name_key(name) or (latest.lines, latest.amount, latest.discount_pct) != (
            encoded, amount, discount):  # a new quote or a changed one: the next revision, from the deal's rep
        rep_id = _deal_rep(s, instance_id)
        customer = ensure_customer(s, name, rep_id, team, now, instance_id, actor_id, "first_deal")
        if latest is not None and latest.status != "rejected":
            latest.status = "revised"
        latest = Quote(instance_id=instance_id, revision=(latest.revision + 1) if latest else 1,
                       customer_id=customer.id, rep_id=rep_id, team=team, lines=encoded, subtotal=subtotal,
                       discount_pct=discount, amount=amount, status="in_review", submitted_at=now)
        s.add(latest)
        s.flush()
    # the latest revision's status follows where the process is (a withdrawn approval is in review again)
    status = "rejected" if outcome == "rejected" else \
        "approved" if stage in APPROVED_STAGES or completed else "in_review"
    if latest.status != status:
        latest.status, latest.decided_at = status, now if status != "in_review" else None

    contract_no, plan = data.get("contract_no"), data.get("payment_plan")
    if not isinstance(contract_no, str) or not isinstance(plan, list):
        return
    contract = s.scalar(select(Contract).where(Contract.instance_id == instance_id))
    if contract is None:
        business_key = s.scalar(select(Instance.business_key).where(Instance.id == instance_id))
        contract = Contract(instance_id=instance_id, business_key=business_key, contract_no=contract_no[:120],
                            quote_id=latest.id, customer_id=latest.customer_id, rep_id=latest.rep_id, team=team,
                            amount=amount, paid=Decimal("0.00"), status="drafted", created_at=now, updated_at=now)
        s.add(contract)
        s.flush()
    changed = False
    payments = data.get("payments")
    digest = hashlib.sha256(json.dumps([contract_no, plan, payments], default=str, sort_keys=True).encode()).hexdigest()
    if digest != contract.plan_digest:
        # (re)drafted from the approved quote, or a payment recorded: the contract's terms, installments, payments
        owner = s.scalar(select(Customer.owner_id).where(Customer.id == latest.customer_id))
        contract.contract_no, contract.amount, contract.quote_id = contract_no[:120], amount, latest.id
        contract.customer_id, contract.rep_id = latest.customer_id, owner or latest.rep_id
        _sync_installments(s, contract, plan, payments, now, actor_id)
        contract.plan_digest = digest
        changed = True
    status = _contract_status(data, completed, outcome)
    signed_on = _day(data.get("customer_signed_on"))
    amendments = data.get("amendment_no")
    amendments = amendments if isinstance(amendments, int) and not isinstance(amendments, bool) else 0
    if (contract.status, contract.signed_on, contract.amendments) != (status, signed_on, amendments):
        contract.status, contract.signed_on, contract.amendments = status, signed_on, amendments
        changed = True
    if changed:
        contract.updated_at = now


def _contract_status(data: dict[str, Any], completed: bool, outcome: str | None) -> str:
    if completed:
        return "fulfilled" if outcome == "fulfilled" else "cancelled"
    if data.get("delivered_on") and data.get("acceptance") == "accepted":
        return "delivered"
    if data.get("amendment_no") and not data.get("customer_signed_on"):
        return "amending"  # reopened by an amendment (amend.py) until the customer signs again
    if data.get("customer_signed_on"):
        return "signed"
    return "drafted"


def _sync_installments(s: Session, contract: Contract, plan: list, payments: Any, now: datetime,
                       actor_id: int | None) -> None:
    """Installments as the plan says, payments as the process recorded them, each payment applied to the
    oldest installment still open."""
    changed = False
    wanted = []
    for no, item in enumerate(plan, 1):
        if isinstance(item, dict) and money(item.get("amount")) is not None and _day(item.get("due_date")):
            wanted.append((no, money(item["amount"]), _day(item["due_date"])))
    rows = {i.no: i for i in s.scalars(select(Installment).where(Installment.contract_id == contract.id))}
    for no, amount, due in wanted:
        row = rows.pop(no, None)
        if row is None:
            row = Installment(contract_id=contract.id, no=no, amount=amount, due_date=due, paid=Decimal("0.00"))
            s.add(row)
            rows_changed = True
        else:
            rows_changed = (row.amount, row.due_date) != (amount, due)
            row.amount, row.due_date = amount, due
        changed |= rows_changed
        rows[no] = row
    for no in [n for n in rows if n > len(wanted)]:
        s.delete(rows.pop(no))
        changed = True

    wanted_payments = []
    for seq, item in enumerate(payments if isinstance(payments, list) else [], 1):
        amount, received = (money(item.get("amount")), _day(item.get("received_on"))) if isinstance(item, dict) \
            else (None, None)
        if amount is not None and received is not None:
            wanted_payments.append(dict(contract_id=contract.id, seq=seq, installment_no=item.get("installment_no"),
                                        amount=amount, received_on=received,
                                        reference=str(item.get("reference") or "")[:200]))
    recorded = [tuple(r) for r in s.execute(select(Payment.seq, Payment.amount, Payment.received_on)
                                            .where(Payment.contract_id == contract.id).order_by(Payment.seq))]
    if recorded != [(p["seq"], p["amount"], p["received_on"]) for p in wanted_payments[:len(recorded)]]:
        # the process's list is no longer what was recorded (a step before collection was done again): start over
        s.execute(delete(Payment).where(Payment.contract_id == contract.id))
        recorded = []
        changed = True
    new = [dict(p, recorded_by_id=actor_id, recorded_at=now) for p in wanted_payments[len(recorded):]]
    if not new and not changed:
        return
    if new:
        s.execute(insert(Payment), new)
    s.flush()
    received = list(s.execute(select(Payment.amount, Payment.received_on).where(Payment.contract_id == contract.id)
                              .order_by(Payment.seq)))
    contract.paid = sum((r.amount for r in received), Decimal("0.00"))
    _apply(sorted(rows.values(), key=lambda r: r.no), received)


def _apply(installments: list[Installment], payments: list) -> None:
    """Oldest installment first: each installment's ``paid`` and the day it was covered in full."""
    for row in installments:
        row.paid, row.paid_on = Decimal("0.00"), None
    queue = list(installments)
    for payment in payments:
        left = payment.amount
        while left > 0 and queue:
            row = queue[0]
            take = min(left, row.amount - row.paid)
            row.paid += take
            left -= take
            if row.paid >= row.amount:
                row.paid_on = payment.received_on
                queue.pop(0)


def _project_complaint(s: Session, instance_id: int, data: dict[str, Any], now: datetime, completed: bool) -> None:
    row = s.scalar(select(Complaint).where(Complaint.instance_id == instance_id))
    name = data.get("customer_name")
    if row is None:
        # the contract's customer, whatever name was typed; the typed one only for a complaint without a contract
        customer_id = s.scalar(select(Contract.customer_id).where(Contract.business_key == data.get("contract_key")))
        if customer_id is None and isinstance(name, str) and name.strip():
            customer_id = ensure_customer(s, name, None, None, now, instance_id, None, "first_deal").id
        row = Complaint(instance_id=instance_id, contract_key=str(data.get("contract_key") or "")[:120] or None,
                        customer_id=customer_id, status="open", opened_at=now)
        s.add(row)
    row.severity = data.get("severity") if isinstance(data.get("severity"), str) else None
    satisfaction = data.get("satisfaction")
    row.satisfaction = satisfaction if isinstance(satisfaction, int) and not isinstance(satisfaction, bool) else None
    if data.get("acceptance_decision") == "decline":
        row.status = "declined"
    elif completed:
        row.status = "closed"
    if completed and row.closed_at is None:
        row.closed_at = now


def _project_dispute(s: Session, instance_id: int, data: dict[str, Any], now: datetime, actor_id: int | None) -> None:
    if data.get("dispute_decision") != "transfer" or not isinstance(data.get("customer_name"), str):
        return
    claimant = s.execute(select(User.id, User.team).join(Instance, Instance.started_by_id == User.id)
                         .where(Instance.id == instance_id)).first()
    customer = s.scalar(select(Customer).where(Customer.name_key == name_key(data["customer_name"])))
    if claimant is None or customer is None or customer.owner_id == claimant.id:
        return
    s.add(OwnershipChange(customer_id=customer.id, from_owner_id=customer.owner_id, to_owner_id=claimant.id,
                          reason="dispute", instance_id=instance_id, actor_id=actor_id, at=now,
                          note=str(data.get("dispute_comment") or "")[:2000] or None))
    s.execute(update(Customer).where(Customer.id == customer.id).values(owner_id=claimant.id, team=claimant.team))


# -- reading them back -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallmentView:
    no: int
    amount: Decimal
    due_date: date
    paid: Decimal
    paid_on: date | None
    overdue_days: int  # 0 unless past due and not paid in full


@dataclass(frozen=True)
class ContractRecords:
    """What the records say of one contract: the quote revisions, the installments with what is paid and
    overdue, the payments. Empty lists before the quote is submitted."""

    quotes: list[tuple[int, Decimal, str, datetime]]  # revision, amount, status, submitted at
    contract_no: str | None
    status: str | None
    amount: Decimal | None
    paid: Decimal | None
    installments: list[InstallmentView]
    payments: list[tuple[Decimal, date, str | None, int | None]]  # amount, received on, reference, installment


def contract_records(rt, instance_id: int) -> ContractRecords:
    from .kpis import business_today

    today = business_today(rt)
    with rt.read() as s:
        quotes = [tuple(r) for r in s.execute(select(Quote.revision, Quote.amount, Quote.status, Quote.submitted_at)
                                              .where(Quote.instance_id == instance_id).order_by(Quote.revision))]
        contract = s.execute(select(Contract.id, Contract.contract_no, Contract.status, Contract.amount,
                                    Contract.paid).where(Contract.instance_id == instance_id)).first()
        if contract is None:
            return ContractRecords(quotes, None, None, None, None, [], [])
        installments = [InstallmentView(r.no, r.amount, r.due_date, r.paid, r.paid_on,
                                        (today - r.due_date).days if r.due_date < today and r.paid < r.amount
                                        and contract.status in STILL_OWED_STATUSES else 0)
                        for r in s.scalars(select(Installment).where(Installment.contract_id == contract.id)
                                           .order_by(Installment.no))]
        payments = [tuple(r) for r in s.execute(select(Payment.amount, Payment.received_on, Payment.reference,
                                                       Payment.installment_no)
                                                .where(Payment.contract_id == contract.id).order_by(Payment.seq))]
    return ContractRecords(quotes, contract.contract_no, contract.status, contract.amount, contract.paid,
                           installments, payments)
