"""Demo contracts: quote-to-cash contracts in every stage and one complaint, so that each demo user finds
work waiting after ``lvyue init-db --demo-contracts``.

Everything goes through the service layer (start, claim, reassign, complete and the timer worker). The
history is replayed on a frozen clock over the past ten weeks, one action at a time in the order it would
have happened, and due timers fire at their due time as the worker would have fired them; so the audit
trail, task due dates and payment timers read like real work. Only one task is left overdue on purpose
(a manager review). The runtime's own clock is put back afterwards.

Seeding is all or nothing per database: if any instance exists, nothing is made.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from tqdm import tqdm

from models import Instance

from .clock import Clock, FrozenClock
from .engine.sandbox import money
from .runtime import Runtime
from .services import accounts, attachments, instances, tasks, timers
from .services.accounts import UserView
from .services.errors import NotFound, ServiceError

DEMO_WORKER = "worker"
TERMS = ("标准销售合同条款（2024 版）：质保 12 个月，争议提交上海仲裁委员会仲裁。\n"
         "Standard sales terms (2024 edition): 12-month warranty; disputes go to the Shanghai Arbitration "
         "Commission.")


def require_demo_users(rt: Runtime, what: str) -> None:
    """Refuses with the missing names unless every demo user exists (``lvyue init-db --demo`` makes them)."""
    missing = []
    for username, *_ in accounts.DEMO_USERS:
        try:
            accounts.get_user(rt, username)
        except NotFound:
            missing.append(username)
    if missing:
        raise NotFound(f"{what} need the demo users; missing: {', '.join(missing)} (run 'lvyue init-db --demo')")


def sample_pdf(*lines: str) -> bytes:
    """A one-page PDF showing ``lines`` (ASCII; anything else becomes ?): the demo's signed contracts and
    acceptance certificates, and test files."""
    def text(line: str) -> str:
        line = line.encode("ascii", "replace").decode()
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    stream = "BT /F1 14 Tf 72 770 Td 20 TL " + " ".join(f"({text(line)}) '" for line in lines) + " ET"
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 4 0 R >> >> "
               "/Contents 5 0 R >>", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream"]
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("ascii")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("ascii")
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode("ascii")
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode("ascii")
    return out


def _certificate(case: _Case, day: str) -> dict[str, tuple[str, bytes]]:
    return {"acceptance_certificate": ("acceptance-certificate.pdf", sample_pdf(
        "Acceptance certificate", f"Customer: {case.customer}", f"Accepted on {day}"))}


def _ago(days: float = 0, hours: float = 0) -> timedelta:
    return timedelta(days=days, hours=hours)


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01'))}"


@dataclass
class _Case:
    """One instance of the demo, filled in when its start event has run."""

    process_key: str
    starter: str
    customer: str
    instance_id: int | None = None
    business_key: str | None = None


@dataclass(order=True)
class _Event:
    offset: timedelta  # when it happens, relative to the seeding moment (negative: before it)
    seq: int
    run: Callable[[], None] = field(compare=False)
    label: str = field(compare=False, default="")


class _Seeder:
    def __init__(self, rt: Runtime, base: datetime) -> None:
        self.rt = rt
        self.base = base
        self.tz = ZoneInfo(rt.business_tz)
        self.events: list[_Event] = []
        self.made: list[str] = []
        self._users: dict[str, UserView] = {}

    # --- time helpers -----------------------------------------------------------------------------------------
    def at(self, ago: timedelta) -> datetime:
        return self.base - ago

    def date(self, ago: timedelta) -> str:
        """The business date (ISO) of the moment ``ago`` before the seeding moment."""
        return self.at(ago).astimezone(self.tz).date().isoformat()

    def day(self, offset_days: int) -> str:
        """The business date ``offset_days`` from the seeding day (negative: in the past)."""
        return (self.base.astimezone(self.tz).date() + timedelta(days=offset_days)).isoformat()

    # --- scheduled actions --------------------------------------------------------------------------------------
    def user(self, username: str) -> UserView:
        if username not in self._users:
            self._users[username] = accounts.get_user(self.rt, username)
        return self._users[username]

    def _add(self, ago: timedelta, label: str, run: Callable[[], None]) -> None:
        self.events.append(_Event(-ago, len(self.events), run, label))  # runs by time, then as written

    def start(self, case: _Case, ago: timedelta, data: dict[str, Any] | Callable[[], dict[str, Any]]) -> None:
        self._add(ago, f"start {case.customer}", lambda: self.start_now(case, data() if callable(data) else data))

    def start_now(self, case: _Case, data: dict[str, Any]) -> None:
        """Start ``case`` at once (the clock's time), as its starter."""
        started = instances.start_instance(self.rt, case.process_key, self.user(case.starter), data)
        case.instance_id, case.business_key = started.instance_id, started.business_key
        self.made.append(started.business_key)

    def task(self, case: _Case, spec_id: str) -> tasks.TaskItem:
        found = {t.spec_id: t for t in tasks.open_tasks_of_instance(self.rt, case.instance_id)}
        if spec_id not in found:
            raise ServiceError(f"demo script out of step with the process: '{spec_id}' is not open on "
                               f"{case.business_key} (open: {', '.join(sorted(found)) or 'nothing'})")
        return found[spec_id]

    def act(self, case: _Case, ago: timedelta, spec_id: str, username: str, data: dict[str, Any],
            files: dict[str, tuple[str, bytes]] | None = None) -> None:
        """Complete ``spec_id``; ``files`` (field: (name, bytes)) are uploaded first, as the task form would."""
        self._add(ago, f"{spec_id} {case.customer}", lambda: self.complete_now(case, spec_id, username, data, files))

    def complete_now(self, case: _Case, spec_id: str, username: str, data: dict[str, Any],
                     files: dict[str, tuple[str, bytes]] | None = None) -> tasks.Completion:
        """``act`` at once (the clock's time)."""
        task_id, user = self.task(case, spec_id).id, self.user(username)
        refs = {field: attachments.attach_file(self.rt, task_id, user, field, name, content)
                for field, (name, content) in (files or {}).items()}
        return tasks.complete(self.rt, task_id, user, {**data, **refs})

    def contract(self, case: _Case, at: tuple[timedelta, ...], contract_no: str, plan: list[dict[str, str]],
                 sign_by: str, customer_signatory: str | None = None, filing_no: str | None = None,
                 purchase_order: str | None = None) -> None:
        """The contract stage at the moments in ``at``: the starter drafts, legal checks, the manager signs for the
        company, then (with a signatory) the customer signs — or, given a ``purchase_order``, confirms the order in
        writing instead — with the evidence attached, and (with a number) legal files it."""
        drafted, checked, company, *rest = at
        self.act(case, drafted, "draft_contract", case.starter, {
            "contract_no": contract_no, "contract_terms": TERMS, "payment_plan": plan, "sign_by": sign_by})
        self.act(case, checked, "legal_contract_check", "legal1", {"contract_check_decision": "approve"})
        self.act(case, company, "sign_company", "mgr1", {"company_signatory": "刘洋 Liu Yang",
                                                         "company_signed_on": self.date(company)})
        if customer_signatory:
            signed = {"deal_confirmation": "signed_contract", "customer_signatory": customer_signatory,
                      "customer_signed_on": self.date(rest[0])}
            evidence = (f"{contract_no}-signed.pdf", sample_pdf(f"Contract {contract_no}", "Signed by both parties",
                                                                 f"Customer signatory: {customer_signatory}"))
            if purchase_order:
                signed.update(deal_confirmation="written_confirmation", confirmation_reference=purchase_order)
                evidence = (f"{contract_no}-purchase-order.pdf", sample_pdf(
                    "Purchase order (confirmed by e-mail)", f"Confirms the order of contract {contract_no}"))
            self.act(case, rest[0], "customer_signature", case.starter, signed, files={"customer_evidence": evidence})
        if filing_no:
            self.act(case, rest[1], "file_contract", "legal1", {"filing_no": filing_no, "filed_on": self.date(rest[1])})

    def claim(self, case: _Case, ago: timedelta, spec_id: str, username: str) -> None:
        self._add(ago, f"claim {spec_id} {case.customer}",
                  lambda: tasks.claim(self.rt, self.task(case, spec_id).id, self.user(username)))

    def reassign(self, case: _Case, ago: timedelta, spec_id: str, by: str, to: str, reason: str) -> None:
        self._add(ago, f"reassign {spec_id} {case.customer}",
                  lambda: tasks.reassign(self.rt, self.task(case, spec_id).id, self.user(by), to, reason))

    # --- running ------------------------------------------------------------------------------------------------
    def run(self, progress: bool) -> list[str]:
        clock = FrozenClock(self.base)
        real: Clock = self.rt.clock
        self.rt.clock = clock
        try:
            ordered = sorted(self.events)
            clock.set(self.base + ordered[0].offset)
            with tqdm(total=len(ordered), desc="demo contracts", unit="step", disable=not progress,
                      file=sys.stderr) as bar:
                for event in ordered:
                    when = self.base + event.offset
                    timers.catch_up(self.rt, clock, when, worker=DEMO_WORKER)
                    try:
                        event.run()
                    except ServiceError as err:
                        raise ServiceError(f"demo step '{event.label}' failed: {err.message}") from err
                    bar.update()
            timers.catch_up(self.rt, clock, self.base, worker=DEMO_WORKER)
        finally:
            self.rt.clock = real
        # whatever fell due while seeding ran, at the real time
        timers.fire_due_timers(self.rt, worker=DEMO_WORKER)
        return self.made


def _quote(customer: str, items: list[tuple[str, int, str]], *, discount: float = 0, risk: str = "low",
           terms: str, delivery_date: str, notes: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "customer_name": customer, "customer_risk": risk,
        "line_items": [{"product": p, "quantity": q, "unit_price": price} for p, q, price in items],
        "discount_pct": discount, "payment_terms": terms, "delivery_date": delivery_date}
    if notes:
        data["notes"] = notes
    return data


def _amount(items: list[tuple[str, int, str]], discount: float = 0) -> Decimal:
    """The quote's amount as ``compute_totals`` reckons it (cents rounded half-up)."""
    subtotal = money(sum((Decimal(q) * money(price) for _, q, price in items), Decimal(0)))
    return money(subtotal * (Decimal(100) - Decimal(str(discount))) / Decimal(100))


def _plan(amount: Decimal, parts: list[tuple[int, str]]) -> list[dict[str, str]]:
    """Installments as (percent, due date); the last one takes the rounding remainder."""
    plan, left = [], amount
    for i, (pct, due) in enumerate(parts):
        value = left if i == len(parts) - 1 else (amount * pct / 100).quantize(Decimal("0.01"))
        left -= value
        plan.append({"amount": _money(value), "due_date": due})
    return plan


def _decision(role: str, decision: str = "approve", comment: str | None = None) -> dict[str, str]:
    data = {f"{role}_decision": decision}
    if comment:
        data[f"{role}_comment"] = comment
    return data


def _script(d: _Seeder) -> None:
    """One short story per contract, each told in the order it happened; the seeder interleaves them."""
    q2c = "quote_to_cash"
    year = d.base.astimezone(d.tz).year

    # 1. A new inquiry: the quote is still to be prepared, unclaimed in the sales reps' queue.
    suzhou = _Case(q2c, "rep2", "苏州精密零件 Suzhou Precision Parts")
    d.start(suzhou, _ago(0, 5), {"customer_name": suzhou.customer})

    # 2. A small quote, below every limit of the approval matrix: the supervisor alone approves (sup1 holds it).
    hangzhou = _Case(q2c, "rep1", "杭州绿源食品 Hangzhou Lvyuan Foods")
    items = [("全自动包装机 Automatic packaging machine ZB-320", 1, "36800.00"),
             ("灌装机备件包 Filling machine spare parts kit", 4, "650.00")]
    d.start(hangzhou, _ago(1, 2), {"customer_name": hangzhou.customer})
    d.act(hangzhou, _ago(0, 6), "prepare_quote", "rep1", _quote(
        hangzhou.customer, items, terms="50% 预付，50% 验收后 30 天 50% advance, 50% 30 days after acceptance",
        delivery_date=d.day(30)))
    d.claim(hangzhou, _ago(0, 2), "supervisor_review", "sup1")

    # 3. Above the supervisor's limit: waiting for a manager, and two days overdue (unclaimed).
    ningbo = _Case(q2c, "rep2", "宁波港通物流 Ningbo Gangtong Logistics")
    items = [("3 吨电动叉车 3 t electric forklift", 6, "26000.00")]
    d.start(ningbo, _ago(5), {"customer_name": ningbo.customer})
    d.act(ningbo, _ago(4, 20), "prepare_quote", "rep2", _quote(
        ningbo.customer, items, terms="30% 预付，70% 验收后 30 天 30% advance, 70% 30 days after acceptance",
        delivery_date=d.day(21)))
    d.act(ningbo, _ago(3, 1), "supervisor_review", "sup1", _decision("supervisor"))

    # 4. Sent back once by the supervisor with a comment; rep1 has taken the rework.
    nanjing = _Case(q2c, "rep1", "南京金陵化工 Nanjing Jinling Chemical")
    items = [("75 kW 防爆电机 75 kW explosion-proof motor", 4, "11500.00")]
    d.start(nanjing, _ago(2, 4), {"customer_name": nanjing.customer})
    d.act(nanjing, _ago(2, 1), "prepare_quote", "rep1", _quote(
        nanjing.customer, items, discount=8, terms="验收后 60 天付清 Net 60 days after acceptance",
        delivery_date=d.day(35)))
    d.act(nanjing, _ago(1, 3), "supervisor_review", "sup1", _decision(
        "supervisor", "send_back", "折扣 8% 超出常规，请附竞品报价作为依据，或将折扣降到 5% 以内。"
        "An 8% discount is above our usual range: attach the competitor's quote or bring it to 5% or less."))
    d.claim(nanjing, _ago(0, 20), "prepare_quote", "rep1")

    # 5. Above the director limit (> 1,000,000): manager and director approved, legal and finance review in
    #    parallel, each held by its reviewer.
    shanghai = _Case(q2c, "rep1", "上海浦江重工 Shanghai Pujiang Heavy Industry")
    items = [("数控龙门加工中心 CNC gantry machining centre GMC-3022", 1, "1180000.00"),
             ("安装调试 Installation and commissioning", 1, "60000.00"),
             ("操作培训 Operator training (10 days)", 1, "40000.00")]
    d.start(shanghai, _ago(6), {"customer_name": shanghai.customer})
    d.act(shanghai, _ago(5, 20), "prepare_quote", "rep1", _quote(
        shanghai.customer, items, discount=3, risk="medium",
        terms="30% 预付，60% 到货，10% 质保金 30% advance, 60% on arrival, 10% retention",
        delivery_date=d.day(90), notes="客户要求现场验收 Customer requires on-site acceptance"))
    d.act(shanghai, _ago(5, 2), "supervisor_review", "sup1", _decision("supervisor"))
    d.act(shanghai, _ago(4, 1), "manager_review", "mgr1", _decision("manager"))
    d.act(shanghai, _ago(0, 10), "director_review", "dir1", _decision(
        "director", comment="战略客户，同意。Strategic account, approved."))
    d.claim(shanghai, _ago(0, 8), "legal_review", "legal1")
    d.claim(shanghai, _ago(0, 7), "finance_review", "fin1")

    # 6. Far above the director limit and waiting for the director (unclaimed).
    beijing = _Case(q2c, "rep2", "北京燕山建工 Beijing Yanshan Construction")
    items = [("QTZ125 塔式起重机 QTZ125 tower crane", 3, "720000.00")]
    d.start(beijing, _ago(3), {"customer_name": beijing.customer})
    d.act(beijing, _ago(2, 20), "prepare_quote", "rep2", _quote(
        beijing.customer, items, discount=4,
        terms="20% 预付，70% 到货，10% 质保金 20% advance, 70% on arrival, 10% retention",
        delivery_date=d.day(60)))
    d.act(beijing, _ago(1, 2), "supervisor_review", "sup1", _decision("supervisor"))
    d.act(beijing, _ago(0, 12), "manager_review", "mgr1", _decision("manager"))

    # 7. Signing: approved by manager, legal and finance, drafted, checked and signed by the company; the
    #    customer's signature was handed from rep1 to rep2.
    shenzhen = _Case(q2c, "rep1", "深圳华星电子 Shenzhen Huaxing Electronics")
    items = [("高速贴片机 High-speed SMT placement machine", 2, "168000.00")]
    amount = _amount(items, 5)
    d.start(shenzhen, _ago(14, 2), {"customer_name": shenzhen.customer})
    d.act(shenzhen, _ago(13, 22), "prepare_quote", "rep1", _quote(
        shenzhen.customer, items, discount=5,
        terms="验收后 30 天付 30%，60 天付 70% 30% 30 days and 70% 60 days after acceptance",
        delivery_date=d.day(25)))
    d.act(shenzhen, _ago(13, 3), "supervisor_review", "sup1", _decision("supervisor"))
    d.act(shenzhen, _ago(12, 4), "manager_review", "mgr1", _decision("manager"))
    d.act(shenzhen, _ago(11, 5), "legal_review", "legal1", _decision("legal"))
    d.act(shenzhen, _ago(11, 2), "finance_review", "fin1", _decision("finance"))
    d.contract(shenzhen, (_ago(9, 3), _ago(6, 4), _ago(4, 5)), f"HT-{year}-0318",
               _plan(amount, [(30, d.day(55)), (70, d.day(85))]), sign_by=d.day(5))
    d.claim(shenzhen, _ago(4, 3), "customer_signature", "rep1")
    d.reassign(shenzhen, _ago(1, 5), "customer_signature", "rep1", "rep2",
               "本人下周休假，由李娜跟进客户签署。On leave next week; Li Na follows up the customer's signature.")

    # 8. Delivery: contract filed, waiting for the delivery team (unclaimed).
    qingdao = _Case(q2c, "rep2", "青岛海达船舶 Qingdao Haida Marine")
    items = [("200 kW 船用柴油发电机组 200 kW marine diesel generator set", 2, "44000.00")]
    amount = _amount(items)
    d.start(qingdao, _ago(20, 3), {"customer_name": qingdao.customer})
    d.act(qingdao, _ago(19, 22), "prepare_quote", "rep2", _quote(
        qingdao.customer, items, terms="30% 预付，70% 验收后 30 天 30% advance, 70% 30 days after acceptance",
        delivery_date=d.day(4)))
    d.act(qingdao, _ago(19, 2), "supervisor_review", "sup1", _decision("supervisor"))
    d.act(qingdao, _ago(18, 4), "manager_review", "mgr1", _decision("manager"))
    d.contract(qingdao, (_ago(16, 3), _ago(15, 5), _ago(14, 4), _ago(12, 2), _ago(11, 5)), f"HT-{year}-0296",
               _plan(amount, [(30, d.day(20)), (70, d.day(50))]), sign_by=d.day(-10),
               customer_signatory="马国栋 Ma Guodong", filing_no=f"BA-{year}-0211",
               purchase_order="采购订单 PO-HD-0412（邮件确认 e-mail confirmation）")

    # 9. Collection: delivered and accepted, the first installment paid, the second one due now; finance
    #    (fin1) holds the payment task.
    wuhan = _Case(q2c, "rep1", "武汉长江汽配 Wuhan Changjiang Auto Parts")
    items = [("六轴工业机器人 Six-axis industrial robot RB-20", 2, "93000.00")]
    amount = _amount(items)
    plan = _plan(amount, [(30, d.day(-20)), (70, d.day(-2))])
    d.start(wuhan, _ago(45, 3), {"customer_name": wuhan.customer})
    d.act(wuhan, _ago(44, 22), "prepare_quote", "rep1", _quote(
        wuhan.customer, items, terms="30% 预付，70% 验收后 25 天 30% advance, 70% 25 days after acceptance",
        delivery_date=d.day(-27)))
    d.act(wuhan, _ago(44, 3), "supervisor_review", "sup1", _decision("supervisor"))
    d.act(wuhan, _ago(43, 4), "manager_review", "mgr1", _decision("manager"))
    d.contract(wuhan, (_ago(41, 2), _ago(40, 4), _ago(39, 5), _ago(37, 3), _ago(36, 5)), f"HT-{year}-0247", plan,
               sign_by=d.day(-35), customer_signatory="黄建华 Huang Jianhua", filing_no=f"BA-{year}-0187")
    d.act(wuhan, _ago(28, 4), "execute_delivery", "dlv1", {
        "delivered_on": d.date(_ago(28, 4)), "delivery_note": "两台机器人已到厂安装 Both robots installed on site"})
    d.act(wuhan, _ago(25, 3), "customer_acceptance", "rep1", {"acceptance": "accepted"},
          files=_certificate(wuhan, d.date(_ago(25, 3))))
    d.act(wuhan, _ago(24, 5), "service_onboarding", "svc1", {"service_contact": "吴芳 Wu Fang",
                                                            "warranty_until": d.day(-28 + 365)})
    d.act(wuhan, _ago(18, 4), "record_payment", "fin1", {
        "amount_received": plan[0]["amount"], "received_on": d.date(_ago(18, 4)),
        "payment_reference": "ICBC-" + d.date(_ago(18, 4)).replace("-", "") + "-0417"})
    d.claim(wuhan, _ago(1, 4), "record_payment", "fin1")

    # 10. Fulfilled: every step done, both installments paid.
    east = _Case(q2c, "rep1", "华东机械 East China Machinery")
    items = [("CK6150 数控车床 CK6150 CNC lathe", 2, "12000.00")]
    amount = _amount(items)
    plan = _plan(amount, [(30, d.day(-50)), (70, d.day(-30))])
    d.start(east, _ago(70, 3), {"customer_name": east.customer})
    d.act(east, _ago(69, 22), "prepare_quote", "rep1", _quote(
        east.customer, items, terms="30% 预付，70% 验收后付清 30% advance, 70% on acceptance",
        delivery_date=d.day(-56)))
    d.act(east, _ago(69, 2), "supervisor_review", "sup1", _decision("supervisor"))
    d.contract(east, (_ago(67, 4), _ago(66, 3), _ago(65, 5), _ago(64, 2), _ago(63, 4)), f"HT-{year}-0201", plan,
               sign_by=d.day(-63), customer_signatory="钱立新 Qian Lixin", filing_no=f"BA-{year}-0142")
    d.act(east, _ago(56, 5), "execute_delivery", "dlv1", {"delivered_on": d.date(_ago(56, 5))})
    d.act(east, _ago(54, 3), "customer_acceptance", "rep1", {"acceptance": "accepted"},
          files=_certificate(east, d.date(_ago(54, 3))))
    d.act(east, _ago(53, 4), "service_onboarding", "svc1", {"service_contact": "吴芳 Wu Fang",
                                                           "warranty_until": d.day(-56 + 365)})
    d.act(east, _ago(49, 5), "record_payment", "fin1", {
        "amount_received": plan[0]["amount"], "received_on": d.date(_ago(49, 5)),
        "payment_reference": "BOC-" + d.date(_ago(49, 5)).replace("-", "") + "-0093"})
    d.act(east, _ago(29, 3), "record_payment", "fin1", {
        "amount_received": plan[1]["amount"], "received_on": d.date(_ago(29, 3)),
        "payment_reference": "BOC-" + d.date(_ago(29, 3)).replace("-", "") + "-0128"})

    # 11. Rejected by the manager: too deep a discount for a customer with overdue invoices.
    wenzhou = _Case(q2c, "rep2", "温州宏达贸易 Wenzhou Hongda Trading")
    items = [("HD-260 注塑机 HD-260 injection moulding machine", 1, "85000.00")]
    d.start(wenzhou, _ago(10, 2), {"customer_name": wenzhou.customer})
    d.act(wenzhou, _ago(9, 22), "prepare_quote", "rep2", _quote(
        wenzhou.customer, items, discount=15, risk="medium", terms="验收后 90 天付清 Net 90 days after acceptance",
        delivery_date=d.day(20)))
    d.act(wenzhou, _ago(9, 3), "supervisor_review", "sup1", _decision("supervisor"))
    d.act(wenzhou, _ago(8, 4), "manager_review", "mgr1", _decision(
        "manager", "reject", "15% 折扣已低于成本线，且客户尚有两笔货款逾期未付，不予批准。"
        "A 15% discount is below our cost line and the customer still has two overdue invoices."))

    # 12. A complaint against the fulfilled contract, waiting for after-sales to accept it (unclaimed).
    complaint = _Case("complaint", "svc1", east.customer)
    d.start(complaint, _ago(0, 4), lambda: {
        "contract_key": east.business_key, "customer_name": east.customer, "severity": "medium",
        "complaint_summary": "一台车床主轴在高速运转时异响，加工精度下降。"
                             "One lathe's spindle is noisy at high speed and machining accuracy has dropped."})


def has_instances(rt: Runtime) -> bool:
    with rt.read() as s:
        return (s.scalar(select(func.count()).select_from(Instance)) or 0) > 0


def seed_demo(rt: Runtime, progress: bool = True) -> list[str]:
    """Create the demo contracts; returns their business keys. Does nothing (returns ``[]``) if the database
    already has an instance. Needs the demo users and the deployed processes (``lvyue init-db``)."""
    if has_instances(rt):
        return []
    require_demo_users(rt, "the demo contracts")
    seeder = _Seeder(rt, rt.clock.now())
    _script(seeder)
    return seeder.run(progress)
