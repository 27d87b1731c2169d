"""Business records kept from the processes: customers and their owners, quotes, contracts, payment plans,
payments and complaints. Only ``workflows/services/records.py`` writes them, from the data of a process step,
so they never drift from what the process decided; dashboards and lists read them with plain SQL."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import Date, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, UTCDateTime

MONEY = Numeric(18, 2)


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    name_key: Mapped[str] = mapped_column(String(200), unique=True)  # case and spaces folded: one customer per name
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    team: Mapped[str | None] = mapped_column(String(80), index=True)  # the owner's team
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OwnershipChange(Base):
    """Append-only: who owned a customer from when, and why (first deal, the team's rule, a dispute)."""

    __tablename__ = "ownership_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    from_owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    to_owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str] = mapped_column(String(40))  # first_deal | round_robin | on_duty | dispute
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id", ondelete="SET NULL"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_ownership_changes_customer", "customer_id", "id"),)


class AssignmentRule(Base):
    """How a team's new customers get their owner: the rep on duty, or round robin over the team's reps."""

    __tablename__ = "assignment_rules"

    team: Mapped[str] = mapped_column(String(80), primary_key=True)
    rule: Mapped[str] = mapped_column(String(20))  # round_robin | on_duty
    on_duty_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    last_assigned_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Quote(Base):
    """One submitted revision of a quote (a send-back and resubmission makes the next revision)."""

    __tablename__ = "quotes"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    rep_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    team: Mapped[str | None] = mapped_column(String(80))
    lines: Mapped[str] = mapped_column(Text)  # JSON: product, quantity, unit_price, line_total
    subtotal: Mapped[Decimal] = mapped_column(MONEY)
    discount_pct: Mapped[Decimal] = mapped_column(Numeric(7, 2))
    amount: Mapped[Decimal] = mapped_column(MONEY)
    status: Mapped[str] = mapped_column(String(20))  # in_review | approved | rejected | revised
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("instance_id", "revision", name="uq_quotes_instance_revision"),
                      Index("ix_quotes_submitted", "submitted_at"))


class Contract(Base):
    __tablename__ = "contracts"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), unique=True)
    business_key: Mapped[str] = mapped_column(String(120), index=True)
    contract_no: Mapped[str] = mapped_column(String(120))
    quote_id: Mapped[int | None] = mapped_column(ForeignKey("quotes.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    rep_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    team: Mapped[str | None] = mapped_column(String(80), index=True)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    paid: Mapped[Decimal] = mapped_column(MONEY)
    status: Mapped[str] = mapped_column(String(20))  # drafted | signed | amending | delivered | fulfilled | cancelled
    signed_on: Mapped[date | None] = mapped_column(Date)
    amendments: Mapped[int] = mapped_column(Integer, default=0)  # amendments (合同修订) so far
    plan_digest: Mapped[str | None] = mapped_column(String(64))  # of the plan and payments the rows were made from
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Installment(Base):
    """One installment of a contract's payment plan; ``paid`` is what the recorded payments cover of it,
    applied oldest installment first."""

    __tablename__ = "installments"

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"))
    no: Mapped[int] = mapped_column(Integer)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    due_date: Mapped[date] = mapped_column(Date)
    paid: Mapped[Decimal] = mapped_column(MONEY)
    paid_on: Mapped[date | None] = mapped_column(Date)  # when it was covered in full

    __table_args__ = (UniqueConstraint("contract_id", "no", name="uq_installments_contract_no"),
                      Index("ix_installments_due", "due_date"))


class Payment(Base):
    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    contract_id: Mapped[int] = mapped_column(ForeignKey("contracts.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)  # position in the process's list of payments
    installment_no: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[Decimal] = mapped_column(MONEY)
    received_on: Mapped[date] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(String(200))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("contract_id", "seq", name="uq_payments_contract_seq"),
                      Index("ix_payments_received", "received_on"))


class Complaint(Base):
    __tablename__ = "complaints"

    id: Mapped[int] = mapped_column(primary_key=True)
    instance_id: Mapped[int] = mapped_column(ForeignKey("instances.id", ondelete="CASCADE"), unique=True)
    contract_key: Mapped[str | None] = mapped_column(String(120), index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    severity: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))  # open | closed | declined
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
