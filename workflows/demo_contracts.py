"""Demo data at volume: ``lvyue demo --contracts N`` drives N quote-to-cash contracts through the real process,
so that dashboards, KPIs and benchmarks have months of history to show.

Like the small demo (``workflows/demo.py``, whose helpers this reuses) every action goes through the service
layer — start, claim, complete with the files a form takes, and the timer worker firing installment and
overdue timers — on a frozen clock replayed over the past ``days``; the runtime's own clock is put back
afterwards. Each contract is a story (a generator) that decides, with its own random numbers, what its people
do next and when: reps quote and rework, reviewers take hours to days (some miss their due time), the
decision table sends large or discounted quotes to the manager, director, legal and finance, some quotes are
sent back or rejected, contracts are drafted with 1–4 installments that add up to the amount, signed,
delivered (a few deliveries are refused and redone) and collected (most on time, some late enough for the
7-day overdue escalation, some in parts); about one delivered contract in seven gets a complaint. The stories
are interleaved in time order; whatever would happen after "now" does not, so recent contracts stay open in
every stage, and some installments stay unpaid past their due date.

The same ``seed`` and ``count`` give the same contracts (customers, line items, amounts, decisions). Keys are
the process's own (the next free ones), customers come from a pool of companies owned by the sales reps
(``rep1``, ``rep2``; an owner already on record is kept), so this runs on an empty demo database as on one
that already holds the small demo or an earlier run.
"""

from __future__ import annotations

import heapq
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as day_time
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from tqdm import tqdm

from models import Customer, Instance, User

from .clock import Clock, FrozenClock
from .demo import (
    DEMO_WORKER,
    TERMS,
    _amount,
    _Case,
    _certificate,
    _decision,
    _money,
    _plan,
    _quote,
    _Seeder,
    require_demo_users,
    sample_pdf,
)
from .runtime import Runtime
from .services import tasks, timers
from .services.errors import InvalidInput, ServiceError
from .services.records import name_key

REPS = ("rep1", "rep2")
REVIEWER = {"supervisor": "sup1", "manager": "mgr1", "director": "dir1", "legal": "legal1", "finance": "fin1"}
REVIEWS = ("supervisor_review", "manager_review", "director_review", "legal_review", "finance_review")
COMPANY_SIGNATORY = "刘洋 Liu Yang"  # mgr1 signs for the company
SERVICE_CONTACT = "吴芳 Wu Fang"  # svc1

# (name, risk): the pool of customers; the first deal makes its rep the owner (records.ensure_customer)
CUSTOMERS: tuple[tuple[str, str], ...] = (
    ("上海华信机电有限公司", "low"), ("苏州恒通精密制造有限公司", "low"), ("杭州宏远纺织机械有限公司", "medium"),
    ("宁波海纳模具有限公司", "low"), ("南京科达自动化设备有限公司", "low"), ("无锡东方轴承有限公司", "low"),
    ("常州天诚电气有限公司", "low"), ("合肥瑞丰新能源科技有限公司", "medium"), ("青岛海瑞船舶配件有限公司", "low"),
    ("济南鲁信重型机械有限公司", "low"), ("天津金桥物流装备有限公司", "low"), ("北京中科智能装备有限公司", "low"),
    ("武汉光谷激光技术有限公司", "low"), ("长沙三湘工程机械有限公司", "high"), ("成都蜀丰食品机械有限公司", "low"),
    ("重庆长江精工汽配有限公司", "medium"), ("西安秦川数控设备有限公司", "low"), ("郑州中原起重设备有限公司", "low"),
    ("广州穗华电子有限公司", "low"), ("深圳鹏达新材料有限公司", "medium"), ("东莞华南五金制品有限公司", "low"),
    ("佛山美嘉家电配件有限公司", "low"), ("厦门闽瑞包装材料有限公司", "low"), ("福州榕兴水产加工有限公司", "high"),
    ("南昌赣江汽车零部件有限公司", "low"), ("昆明滇池制药设备有限公司", "medium"), ("沈阳北方机床有限公司", "low"),
    ("大连渤海石化设备有限公司", "low"), ("温州瑞安鞋业机械有限公司", "medium"), ("嘉兴禾丰塑胶有限公司", "low"),
)

# (product, list price in CNY, fewest, most per order)
PRODUCTS: tuple[tuple[str, int, int, int], ...] = (
    ("CK6150 数控车床 CK6150 CNC lathe", 118000, 1, 6),
    ("VMC850 立式加工中心 VMC850 vertical machining centre", 268000, 1, 4),
    ("GMC-3022 数控龙门加工中心 GMC-3022 CNC gantry machining centre", 1150000, 1, 1),
    ("RB-20 六轴工业机器人 RB-20 six-axis industrial robot", 93000, 1, 8),
    ("3 吨电动叉车 3 t electric forklift", 26000, 1, 10),
    ("ZB-320 全自动包装机 ZB-320 automatic packaging machine", 36800, 1, 5),
    ("75 kW 防爆电机 75 kW explosion-proof motor", 11500, 1, 20),
    ("伺服驱动器 Servo drive", 4200, 2, 60),
    ("PLC 控制柜 PLC control cabinet", 48000, 1, 6),
    ("6 kW 光纤激光切割机 6 kW fibre laser cutter", 420000, 1, 2),
    ("HD-260 注塑机 HD-260 injection moulding machine", 85000, 1, 6),
    ("55 kW 螺杆空压机 55 kW screw air compressor", 68000, 1, 4),
    ("工业冷水机 Industrial chiller", 32000, 1, 6),
    ("皮带输送线（每米）Belt conveyor line (per metre)", 1800, 10, 200),
    ("轴承套件 Bearing kit", 380, 10, 400),
    ("备件包 Spare parts kit", 650, 2, 100),
    ("安装调试 Installation and commissioning", 15000, 1, 1),
    ("操作培训（每天）Operator training (per day)", 4000, 1, 10),
    ("年度维保服务 Annual maintenance contract", 24000, 1, 3),
    ("QTZ125 塔式起重机 QTZ125 tower crane", 720000, 1, 2),
)

SPLITS = {1: ((100,),), 2: ((30, 70), (50, 50), (40, 60)), 3: ((30, 60, 10), (30, 40, 30), (20, 50, 30)),
          4: ((25, 25, 25, 25), (20, 30, 30, 20), (10, 40, 40, 10))}
SIGNATORIES = ("王建国 Wang Jianguo", "李红梅 Li Hongmei", "张志强 Zhang Zhiqiang", "陈晓燕 Chen Xiaoyan",
               "刘德华 Liu Dehua", "杨帆 Yang Fan", "赵磊 Zhao Lei", "黄丽 Huang Li", "周涛 Zhou Tao", "吴敏 Wu Min")
BANKS = ("ICBC", "BOC", "CCB", "ABC", "BOCOM", "CMB")
SEND_BACK = {
    "supervisor": "折扣偏高，请附竞品报价或降低折扣。The discount is high: attach a competitor's quote or lower it.",
    "manager": "付款条件需要更多预付款，请与客户重新商议。Ask the customer for a larger advance payment.",
    "director": "交期过紧，请与交付部确认后修改。The delivery date is too tight: confirm with delivery and revise.",
    "legal": "请补充质保与违约责任条款说明。Add the warranty and liability terms to the quote notes.",
    "finance": "客户信用额度不足，请调整付款计划。The customer's credit limit is short: revise the payment terms.",
}
REJECT = {
    "supervisor": "价格低于成本线，不予批准。The price is below our cost line.",
    "manager": "客户尚有逾期货款未付，暂停新订单。The customer still has overdue invoices; no new orders for now.",
    "director": "不符合公司战略方向，不予批准。Not in line with our strategy.",
    "legal": "客户拒绝接受标准责任条款，法律风险过高。The customer refuses our standard liability terms.",
    "finance": "客户资信评估未通过。The customer failed the credit check.",
}
DELIVERY_NOTES = ("设备已到厂并完成安装 Equipment delivered and installed",
                  "分两批发货，已全部到货 Shipped in two lots, all arrived", "现场调试完成 Commissioned on site", "")
ACCEPTANCE_REFUSALS = ("设备噪音超标，要求更换 Noise above the agreed limit; replacement requested",
                       "缺少随机资料和备件 Manuals and spare parts missing",
                       "外观有运输损伤 Transport damage on the casing")
COMPLAINTS = (
    ("quality", "主轴在高速运转时异响，加工精度下降。The spindle is noisy at high speed and accuracy has dropped."),
    ("quality", "设备频繁报警停机。The machine stops with alarms several times a day."),
    ("delivery", "交货比合同约定晚了两周。Delivery came two weeks later than agreed."),
    ("billing", "发票金额与合同不符。The invoice amount does not match the contract."),
    ("service", "售后工程师响应太慢。The service engineer took too long to respond."),
    ("other", "操作培训时间不足。The operator training was too short."),
)
ESCALATION_ACTIONS = ("已电话催收，客户承诺下周付款。Called the customer; payment promised next week.",
                      "发送律师函。Sent a lawyer's letter.", "与客户财务总监面谈，确认付款计划。Met the customer's CFO "
                      "and agreed a payment schedule.", "暂停后续发货直至付款。Further shipments held until payment.")

Story = Generator[datetime, None, None]


@dataclass
class _Contract(_Case):
    """One quote-to-cash contract of the demo: who, what, and the random numbers its story draws from."""

    rng: random.Random = field(default_factory=random.Random)
    risk: str = "low"
    start_at: datetime | None = None
    fast: bool = False  # a short, clean path, so that a small demo still has a fulfilled contract
    force: set[str] = field(default_factory=set)  # reject, partial, late, complaint
    items: list[tuple[str, int, str]] = field(default_factory=list)
    discount: float = 0
    split: tuple[int, ...] = (100,)
    delivery_date: str = ""
    round_plan: list[tuple[str, str]] = field(default_factory=list)  # per quote round: (decision, role)
    handled: set[int] = field(default_factory=set)  # escalation tasks already looked at

    @property
    def amount(self) -> Decimal:
        return _amount(self.items, self.discount)


@dataclass
class _Story:
    gen: Story
    label: str
    main: bool  # a contract's own story (counted by the progress bar), not a side story


@dataclass
class DemoReport:
    count: int
    seed: int
    days: int
    seconds: float
    keys: list[str]
    statuses: Counter
    stats: Counter

    def summary(self) -> str:
        s, st = self.statuses, self.stats
        rate = self.count / self.seconds if self.seconds else 0.0
        span = f"{self.keys[0]} … {self.keys[-1]}" if self.keys else "-"
        order = ("quote", "approval", "contract", "delivery", "collection", "after_sales")
        stages = ", ".join(f"{stage} {n}" for stage, n in sorted(
            s.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order))
            if stage not in ("fulfilled", "rejected", "running"))
        return "\n".join([
            f"demo: {self.count} contracts over the past {self.days} days (seed {self.seed}), {span}",
            f"  fulfilled {s['fulfilled']}, rejected {s['rejected']}, running {s['running']} ({stages or '-'})",
            f"  send-backs {st['send_back']}, payments {st['payment']} ({st['partial']} partial), "
            f"escalations handled {st['escalation']}, complaints {st['complaint']} ({st['declined']} declined), "
            f"deliveries refused {st['redelivery']}",
            f"  {self.seconds:.1f} s, {rate:.1f} contracts/s",
        ])


def _likely_reviews(amount: Decimal, discount: float, risk: str) -> list[str]:
    """Who the decision table (bpmn/approval_matrix.dmn) will likely ask to review, the supervisor first: only to
    pick who sends back or rejects; the engine decides who really reviews (one it does not ask never acts)."""
    if amount > 1_000_000 or discount > 20 or risk == "high":
        return ["supervisor", "manager", "director", "legal", "finance"]
    if amount > 200_000 or discount > 10:
        return ["supervisor", "manager", "legal", "finance"]
    if amount > 50_000 or discount > 5:
        return ["supervisor", "manager"]
    return ["supervisor", "finance"] if risk == "medium" else ["supervisor"]


def _price(value: float) -> str:
    step = 1 if value < 1000 else 10 if value < 10000 else 100
    return f"{max(step, round(value / step) * step)}.00"


def _line_items(rng: random.Random, target: float) -> list[tuple[str, int, str]]:
    """1–4 lines whose total comes near ``target``: products whose list price fits the line's share."""
    count = rng.choice((1, 1, 1, 2, 2, 3, 4))
    weights = [rng.uniform(0.3, 1.0) for _ in range(count)]
    items, used = [], set()
    for w in weights:
        share = target * w / sum(weights)
        fits = [p for p in PRODUCTS if p[0] not in used and p[1] * p[2] <= share * 1.25 and p[1] * p[3] >= share * 0.8]
        if not fits:
            fits = [min((p for p in PRODUCTS if p[0] not in used), key=lambda p: abs(math.log(p[1] * p[3] / share)))]
        product, list_price, fewest, most = rng.choice(fits)
        used.add(product)
        quantity = min(most, max(fewest, round(share / list_price)))
        items.append((product, quantity, _price(share / quantity)))
    return items


class _Demo(_Seeder):
    def __init__(self, rt: Runtime, base: datetime, count: int, seed: int, days: int) -> None:
        super().__init__(rt, base)
        self.count, self.seed, self.days = count, seed, days
        self.queue: list[tuple[datetime, int, _Story]] = []
        self.seq = 0
        self.stats: Counter = Counter()
        self.contracts: list[_Contract] = []

    # --- the cast ---------------------------------------------------------------------------------------------
    def owners(self) -> dict[str, str]:
        """Pool customer -> its rep: the owner on record if it is one of the demo reps, else by turns; a customer
        owned by someone else is left out (a rep may not quote another rep's customer)."""
        keys = {name_key(name): name for name, _ in CUSTOMERS}
        with self.rt.read() as s:
            on_record = dict(s.execute(select(Customer.name_key, User.username)
                                       .outerjoin(User, User.id == Customer.owner_id)
                                       .where(Customer.name_key.in_(list(keys)))).all())
        owners = {}
        for i, (name, _) in enumerate(CUSTOMERS):
            owner = on_record.get(name_key(name)) or REPS[i % len(REPS)]  # no owner yet: a complaint made it
            if owner in REPS:
                owners[name] = owner
        if not owners:
            raise ServiceError("every customer of the demo pool belongs to someone other than the demo reps")
        return owners

    def plan(self) -> None:
        """Every contract's customer, start time and quote, drawn before anything runs (so a seed gives the same
        contracts whatever the database holds). Starts are spread evenly over the span (one in each of ``count``
        equal slices), oldest first; the oldest few carry the cases a small demo must still show."""
        master = random.Random(self.seed)
        owners = self.owners()
        pool = list(CUSTOMERS)
        weights = [1 / (rank + 3) for rank in range(len(pool))]  # a few big accounts, a long tail
        span = timedelta(days=self.days)
        for i in range(self.count):
            name, risk = master.choices(pool, weights)[0]
            while name not in owners:  # skip customers that are not the demo reps' to quote
                name, risk = pool[(pool.index((name, risk)) + 1) % len(pool)]
            offset = span * ((self.count - i - 1 + master.uniform(0.05, 0.95)) / self.count)
            start = self.work(self.base - offset, master)
            if start > self.base:  # a weekend "now": the newest inquiry came in anyway
                start = self.base - timedelta(minutes=master.uniform(10, 120))
            c = _Contract("quote_to_cash", owners[name], name, rng=random.Random(f"{self.seed}/{i}"),
                          risk=risk, start_at=start)
            self.contracts.append(c)
        order = sorted(self.contracts, key=lambda c: c.start_at)
        for c, features in zip(order, ({"complaint"}, {"partial"}, {"late"}, {"reject"}), strict=False):
            c.force, c.fast = features, "reject" not in features
        for c in self.contracts:
            self.quote(c)

    def quote(self, c: _Contract) -> None:
        rng = c.rng
        while True:
            target = math.exp(rng.uniform(math.log(5200), math.log(1_950_000)))
            c.discount = 0 if rng.random() < 0.45 else round(rng.uniform(1, 15) * 2) / 2
            c.items = _line_items(rng, target / (1 - c.discount / 100))
            if Decimal(5000) <= c.amount <= Decimal(2_000_000):
                break
        c.split = rng.choice(SPLITS[rng.choice((1, 2) if c.fast else (1, 2, 2, 3, 3, 4))])
        lead = rng.randint(18, 25) if c.fast else rng.randint(20, 60)
        c.delivery_date = (c.start_at.astimezone(self.tz).date() + timedelta(days=lead)).isoformat()
        rounds = 0 if c.fast else 2 if rng.random() < 0.03 else 1 if rng.random() < 0.15 else 0
        c.round_plan = [("send_back", "")] * rounds
        if "reject" in c.force or (not c.fast and rng.random() < 0.10):
            c.round_plan.append(("reject", ""))

    # --- time -------------------------------------------------------------------------------------------------
    def work(self, t: datetime, rng: random.Random) -> datetime:
        """``t``, or when it falls outside working hours (Monday to Friday, 08:30–18:30 in the business time
        zone), the next working morning (with a few minutes' spread)."""
        local = t.astimezone(self.tz)
        if local.weekday() < 5 and day_time(8, 30) <= local.time() <= day_time(18, 30):
            return t
        day = local.date() + timedelta(days=1 if local.time() > day_time(18, 30) else 0)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        return datetime.combine(day, day_time(8, 30), self.tz) + timedelta(minutes=rng.uniform(0, 90))

    def later(self, t: datetime, rng: random.Random, median_hours: float, spread: float = 1.0) -> datetime:
        """A person's reaction time after ``t``: log-normal around ``median_hours`` (a long tail: some miss their
        due time), moved into working hours."""
        return self.work(t + timedelta(hours=rng.lognormvariate(math.log(median_hours), spread)), rng)

    def when(self, day: date, rng: random.Random) -> datetime:
        """Some time in the working day ``day`` (or the next working morning)."""
        return self.work(datetime.combine(day, day_time(0), self.tz) + timedelta(hours=rng.uniform(9, 17)), rng)

    # --- actions (at the clock's time) ---------------------------------------------------------------------------
    def open_tasks(self, case: _Case) -> list[tasks.TaskItem]:
        return tasks.open_tasks_of_instance(self.rt, case.instance_id)

    def step(self, c: _Contract, t: datetime, spec_id: str, username: str, data: dict[str, Any],
             files: dict[str, tuple[str, bytes]] | None = None, claim: float = 0.4) -> Story:
        """Complete ``spec_id`` at ``t`` as ``username``; with probability ``claim`` they claim it first, some
        time before."""
        rng = c.rng
        if rng.random() < claim:
            now = self.rt.clock.now()
            at = self.work(now + (t - now) * rng.uniform(0.1, 0.6), rng)
            if at < t:
                yield at
                item = self.task(c, spec_id)
                if item.assignee is None:
                    tasks.claim(self.rt, item.id, self.user(username))
        yield t
        self.complete_now(c, spec_id, username, data, files)

    def spawn(self, story: Story, at: datetime, label: str, main: bool = False) -> None:
        heapq.heappush(self.queue, (at, self.seq, _Story(story, label, main)))
        self.seq += 1

    # --- the stories ------------------------------------------------------------------------------------------
    def contract_story(self, c: _Contract) -> Story:
        rng, rep = c.rng, c.starter
        self.start_now(c, {"customer_name": c.customer})
        t = self.later(c.start_at, rng, 5)
        rounds = 0
        yield from self.step(c, t, "prepare_quote", rep, self.quote_data(c))
        planned: dict[str, datetime] = {}  # when each open review gets done (legal and finance side by side)
        while True:  # approvals: whatever review the process has opened next
            found = {item.spec_id for item in self.open_tasks(c)}
            if "prepare_quote" in found:  # sent back: the rep reworks the quote
                rounds += 1
                self.rework(c)
                t = self.later(t, rng, 10)
                yield from self.step(c, t, "prepare_quote", rep, self.quote_data(c), claim=0)
                continue
            pending = [spec for spec in REVIEWS if spec in found]
            if not pending:
                break
            for spec in pending:  # a review opened by the step just done
                planned.setdefault(spec, self.later(t, rng, 6))
            spec = min(pending, key=planned.__getitem__)
            t = planned.pop(spec)
            role = spec.removesuffix("_review")
            yield from self.step(c, t, spec, REVIEWER[role], self.decide(c, role, rounds))
        if "draft_contract" not in {item.spec_id for item in self.open_tasks(c)}:
            return  # rejected
        yield from self.contract_stage(c, t)

    def quote_data(self, c: _Contract) -> dict[str, Any]:
        if len(c.split) == 1:
            terms = "验收后一次付清 Paid in full after acceptance"
        else:
            parts = " / ".join(f"{p}%" for p in c.split)
            terms = f"分 {len(c.split)} 期付款：{parts} {len(c.split)} installments: {parts}"
        return _quote(c.customer, c.items, discount=c.discount, risk=c.risk, terms=terms,
                      delivery_date=c.delivery_date)

    def decide(self, c: _Contract, role: str, rounds: int) -> dict[str, str]:
        """The reviewer's decision in quote round ``rounds``: the round's planned send-back or rejection, made by
        one of the reviewers the quote likely sees (drawn when the round's first review comes up)."""
        if rounds >= len(c.round_plan):
            return _decision(role)
        verdict, who = c.round_plan[rounds]
        if not who:
            likely = _likely_reviews(c.amount, c.discount, c.risk)
            who = c.rng.choice(likely)
            c.round_plan[rounds] = (verdict, who)
        if role != who:
            return _decision(role)
        self.stats[verdict] += 1
        return _decision(role, verdict, (SEND_BACK if verdict == "send_back" else REJECT)[role])

    def rework(self, c: _Contract) -> None:
        if c.discount > 0:
            c.discount = max(0.0, c.discount - c.rng.choice((2, 3, 5)))
        else:  # a leaner offer: fewer of the first item, if there are several
            product, quantity, price = c.items[0]
            c.items[0] = (product, max(1, quantity - 1), price)

    def contract_stage(self, c: _Contract, t: datetime) -> Story:
        rng, rep = c.rng, c.starter
        key_no = c.business_key.split("-", 1)[1]
        contract_no, filing_no = f"HT-{key_no}", f"BA-{key_no}"
        delivery = date.fromisoformat(c.delivery_date)
        first_due = delivery + timedelta(days=rng.randint(15, 20) if c.fast else rng.randint(10, 30))
        dues = [first_due]
        for _ in c.split[1:]:
            dues.append(dues[-1] + timedelta(days=rng.randint(20, 30) if c.fast else rng.randint(20, 45)))
        plan = _plan(c.amount, [(pct, due.isoformat()) for pct, due in zip(c.split, dues, strict=True)])
        check_send_back = not c.fast and rng.random() < 0.06
        while True:
            t = self.later(t, rng, 16)
            sign_by = (self.date_of(t) + timedelta(days=rng.randint(7, 14))).isoformat()
            yield from self.step(c, t, "draft_contract", rep, {
                "contract_no": contract_no, "contract_terms": TERMS, "payment_plan": plan, "sign_by": sign_by},
                claim=0)
            t = self.later(t, rng, 8)
            if check_send_back:
                check_send_back = False
                self.stats["contract_send_back"] += 1
                yield from self.step(c, t, "legal_contract_check", "legal1", {
                    "contract_check_decision": "send_back",
                    "contract_check_comment": "违约金条款与报价单不一致，请修改。"
                                              "The penalty clause does not match the quote."})
                continue
            yield from self.step(c, t, "legal_contract_check", "legal1", {"contract_check_decision": "approve"})
            break
        t = self.later(t, rng, 8)
        yield from self.step(c, t, "sign_company", "mgr1", {"company_signatory": COMPANY_SIGNATORY,
                                                            "company_signed_on": self.date_of(t).isoformat()})
        t = self.later(t, rng, 40 if not c.fast else 20, 0.8)  # the customer signs in their own time
        signatory = rng.choice(SIGNATORIES)
        signed = {"deal_confirmation": "signed_contract", "customer_signatory": signatory,
                  "customer_signed_on": self.date_of(t).isoformat()}
        evidence = (f"{contract_no}-signed.pdf", sample_pdf(f"Contract {contract_no}", "Signed by both parties",
                                                             f"Amount: CNY {c.amount}"))
        if c.amount < 100_000 and rng.random() < 0.3:
            po = f"PO-{rng.randint(10000, 99999)}"
            signed.update(deal_confirmation="written_confirmation",
                          confirmation_reference=f"采购订单 {po}（邮件确认 e-mail confirmation）")
            evidence = (f"{contract_no}-purchase-order.pdf", sample_pdf(
                "Purchase order (confirmed by e-mail)", f"Confirms the order of contract {contract_no}"))
        yield from self.step(c, t, "customer_signature", rep, signed, files={"customer_evidence": evidence})
        t = self.later(t, rng, 12)
        yield from self.step(c, t, "file_contract", "legal1", {"filing_no": filing_no,
                                                               "filed_on": self.date_of(t).isoformat()})
        # delivery: around the promised date (some late), never before the contract is filed
        slip = rng.choice((-5, -4, -3, -2, -2, -1, -1, -1, 0, 2, 5, 9))
        t = max(self.later(t, rng, 20), self.when(delivery + timedelta(days=slip), rng))
        redo = not c.fast and rng.random() < 0.07
        while True:
            yield from self.step(c, t, "execute_delivery", "dlv1", {
                "delivered_on": self.date_of(t).isoformat(), "delivery_note": rng.choice(DELIVERY_NOTES)})
            t = self.later(t, rng, 48, 0.7)
            day = self.date_of(t).isoformat()
            if redo:
                redo = False
                self.stats["redelivery"] += 1
                refusal = rng.choice(ACCEPTANCE_REFUSALS)
                yield from self.step(c, t, "customer_acceptance", rep, {
                    "acceptance": "rejected", "acceptance_note": refusal}, files={"acceptance_certificate": (
                        "rejection.pdf", sample_pdf("Delivery not accepted", f"Contract {contract_no}", day))})
                t = self.later(t, rng, 24 * 6, 0.5)
                continue
            yield from self.step(c, t, "customer_acceptance", rep, {"acceptance": "accepted"},
                                 files=_certificate(c, day))
            break
        accepted = t
        self.spawn(self.onboarding_story(c, accepted), self.later(accepted, rng, 30), f"onboarding {c.business_key}")
        if "complaint" in c.force or (not c.force and rng.random() < 0.18):
            first = c.force == {"complaint"}
            opened = self.work(accepted + timedelta(days=rng.uniform(3, 8) if first else rng.uniform(3, 40)), rng)
            self.spawn(self.complaint_story(c, random.Random(rng.random()), decline=not first and rng.random() < 0.15),
                       opened, f"complaint on {c.business_key}")
        yield from self.collection(c, accepted, plan)

    def date_of(self, t: datetime) -> date:
        return t.astimezone(self.tz).date()

    def collection(self, c: _Contract, t: datetime, plan: list[dict[str, str]]) -> Story:
        """Each installment's payments: on time (most), late past the 7-day escalation, in two parts, or not yet;
        the manager handles most escalations the timer raises."""
        rng = c.rng
        for no, item in enumerate(plan, 1):
            amount = Decimal(item["amount"])
            due = datetime.combine(date.fromisoformat(item["due_date"]), day_time(0), self.tz)
            roll = rng.random()
            if (no == 1 and "late" in c.force) or (not c.fast and roll < 0.18):
                mode = "late"
            elif (no == 1 and "partial" in c.force) or (not c.fast and roll < 0.30):
                mode = "partial"
            elif not c.fast and roll < 0.34:
                mode = "very_late"
            else:
                mode = "on_time"
            first = due + timedelta(days={"on_time": rng.uniform(0.3, 5), "partial": rng.uniform(0.5, 5),
                                          "late": rng.uniform(9, 30), "very_late": rng.uniform(40, 150)}[mode])
            parts = [(first, amount)]
            if mode == "partial":
                share = (amount * Decimal(str(rng.uniform(0.3, 0.7)))).quantize(Decimal("1"))
                later = first + timedelta(days=rng.uniform(4, 20) if "partial" in c.force else rng.uniform(5, 40))
                parts = [(first, share), (later, amount - share)]
            for at, value in parts:
                at = self.work(max(at, t + timedelta(hours=2)), rng)  # the task opens when the one before is paid
                overdue = max(due + timedelta(days=7), t)
                if at > overdue + timedelta(hours=4):  # the timer raised an escalation first
                    look = self.later(overdue, rng, 20)
                    if look < at:
                        yield look
                        self.escalations(c, look)
                yield at
                paid_on = self.date_of(at)
                self.complete_now(c, "record_payment", "fin1", {
                    "amount_received": _money(value), "received_on": paid_on.isoformat(),
                    "payment_reference": f"{rng.choice(BANKS)}-{paid_on:%Y%m%d}-{rng.randint(1000, 9999)}"})
                self.stats["payment"] += 1
                self.stats["partial"] += value < amount
                t = at
        self.stats["paid_in_full"] += 1

    def escalations(self, c: _Contract, now: datetime) -> None:
        """The manager handles (most of) the overdue escalations open on the contract."""
        for item in self.open_tasks(c):
            if item.spec_id != "overdue_escalation" or item.id in c.handled:
                continue
            c.handled.add(item.id)
            if c.rng.random() < 0.8:
                self.stats["escalation"] += 1
                tasks.complete(self.rt, item.id, self.user("mgr1"), {
                    "escalation_action": c.rng.choice(ESCALATION_ACTIONS),
                    "next_contact_on": (self.date_of(now) + timedelta(days=c.rng.randint(3, 10))).isoformat()})

    def onboarding_story(self, c: _Contract, accepted: datetime) -> Story:
        warranty = self.date_of(accepted) + timedelta(days=365)
        self.complete_now(c, "service_onboarding", "svc1", {"service_contact": SERVICE_CONTACT,
                                                            "warranty_until": warranty.isoformat()})
        return
        yield  # a generator that acts once

    def complaint_story(self, c: _Contract, rng: random.Random, decline: bool) -> Story:
        category, summary = rng.choice(COMPLAINTS)
        step = _Contract("complaint", "svc1", c.customer, rng=random.Random(rng.random()))
        self.start_now(step, {"contract_key": c.business_key, "customer_name": c.customer,
                              "severity": rng.choice(("low", "medium", "medium", "high")),
                              "complaint_summary": summary})
        self.stats["complaint"] += 1
        t = self.later(self.rt.clock.now(), rng, 6)
        if decline:
            self.stats["declined"] += 1
            yield from self.step(step, t, "accept_complaint", "svc1", {
                "acceptance_decision": "decline", "category": category,
                "acceptance_comment": "属于使用不当，不在质保范围内。Caused by misuse; not covered by the warranty."})
        else:
            yield from self.step(step, t, "accept_complaint", "svc1", {"acceptance_decision": "accept",
                                                                       "category": category})
            t = self.later(t, rng, 30)
            yield from self.step(step, t, "investigate", "svc1", {
                "root_cause": "部件批次质量问题 A faulty batch of parts",
                "findings": "现场检查确认问题，已取样送检。Confirmed on site; samples sent for testing."})
            t = self.later(t, rng, 48)
            resolution = {"resolution": "更换故障部件并延长质保 6 个月。Replaced the faulty parts; warranty extended "
                                        "by 6 months.", "resolved_on": self.date_of(t).isoformat()}
            if rng.random() < 0.3:
                resolution["compensation"] = _money(Decimal(rng.randint(5, 50) * 100))
            yield from self.step(step, t, "resolve", "svc1", resolution)
        t = self.later(t, rng, 8)
        yield from self.step(step, t, "feedback_to_customer", "svc1", {
            "feedback_summary": "已向客户说明处理结果。The customer was told the outcome.",
            "customer_reached": rng.random() < 0.9})
        t = self.later(t, rng, 36)
        score = rng.choices((1, 2, 3, 4, 5), (30, 30, 25, 10, 5) if decline else (3, 7, 18, 37, 35))[0]
        yield from self.step(step, t, "satisfaction_survey", c.starter, {"satisfaction": score})

    # --- running ------------------------------------------------------------------------------------------------
    def simulate(self, progress: bool) -> None:
        for c in self.contracts:
            self.spawn(self.contract_story(c), c.start_at, c.customer, main=True)
        real: Clock = self.rt.clock
        clock = FrozenClock(self.queue[0][0])
        self.rt.clock = clock
        try:
            with tqdm(total=self.count, desc="demo contracts", unit="contract", disable=not progress,
                      file=sys.stderr) as bar:
                while self.queue:
                    at, _, story = heapq.heappop(self.queue)
                    if at > self.base:  # it would happen after now: it has not happened yet
                        story.gen.close()
                        bar.update(story.main)
                        continue
                    timers.catch_up(self.rt, clock, at, worker=DEMO_WORKER)
                    try:
                        following = next(story.gen)
                    except StopIteration:
                        bar.update(story.main)
                        continue
                    except ServiceError as err:
                        raise ServiceError(f"demo story '{story.label}' failed at {at:%Y-%m-%d %H:%M}: "
                                           f"{_explain(err)}") from err
                    heapq.heappush(self.queue, (max(following, at), self.seq, story))
                    self.seq += 1
            timers.catch_up(self.rt, clock, self.base, worker=DEMO_WORKER)
        finally:
            self.rt.clock = real
        _fire_all_due(self.rt)  # whatever fell due while the demo ran, at the real time


def _explain(err: ServiceError) -> str:
    if isinstance(err, InvalidInput) and err.errors:
        return err.message + " (" + "; ".join(f"{k}: {v}" for k, v in err.errors.items()) + ")"
    return err.message


def _fire_all_due(rt: Runtime) -> None:
    while timers.fire_due_timers(rt, worker=DEMO_WORKER).fired:
        pass


def generate(rt: Runtime, count: int, seed: int | None = None, days: int = 180, progress: bool = True) -> DemoReport:
    """Drive ``count`` contracts through the process over the past ``days`` (see the module's doc). Needs the demo
    users and the deployed processes (``lvyue init-db``)."""
    require_demo_users(rt, "the demo contracts")
    if count < 1 or days < 1:
        raise InvalidInput("give at least one contract and one day")
    seed = random.randrange(1_000_000) if seed is None else seed
    started = time.perf_counter()
    _fire_all_due(rt)  # timers of contracts already here that fell due: at the real time, not in the replayed past
    # every contract's workflow stays cached between its steps: no step reloads a workflow from its stored state
    rt.workflows.size = max(rt.workflows.size, min(count * 2 + 64, 8192))
    demo = _Demo(rt, rt.clock.now(), count, seed, days)
    demo.plan()
    demo.simulate(progress)
    seconds = time.perf_counter() - started
    ids = [c.instance_id for c in demo.contracts if c.instance_id is not None]
    statuses: Counter = Counter()
    with rt.read() as s:
        for status, end_event, stage in s.execute(select(Instance.status, Instance.end_event, Instance.stage)
                                                  .where(Instance.id.in_(ids))):
            if status == "completed":
                statuses["fulfilled" if end_event == "end_fulfilled" else "rejected"] += 1
            else:
                statuses["running"] += 1
                statuses[stage or "quote"] += 1
        keys = list(s.scalars(select(Instance.business_key).where(Instance.id.in_(ids)).order_by(Instance.id)))
    return DemoReport(count, seed, days, seconds, keys, statuses, demo.stats)
