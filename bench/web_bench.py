"""Web benchmark: how fast are the pages people live in, on a realistic volume of contracts?

On a fresh SQLite file and (unless ``--no-postgres``) a throwaway PostgreSQL database this builds N
quote-to-cash contracts (default 5,000; ``--quick`` 500) spread over every stage, then times the queue,
contract, task and API pages through the Flask test client, logged in as the demo users.

How the volume is made (printed with the results):

* A few hundred contracts (300; ``--quick`` 150) are driven through the service layer on one simulated
  timeline: started, completed task by task as the right user, claimed, and their timers fired by the worker
  as the clock passes them. A few of them (8; ``--quick`` 3) are old contracts of rep1 with 30 supervisor
  send-back passes each.
* The rest are copies of those, written in batches: every row of a contract (instance with its stored
  workflow state, task, step, timer, audit and notification rows) is copied with new ids, task UUIDs (also
  inside the stored state), business key and customer name, its times moved by a random offset (finished
  contracts by up to 200 days into the past; running ones by at most ±12 hours and those waiting on a timer
  not at all, so that the rows stay in line with the dates inside the state). So the queues read real rows,
  and a copy can be opened and completed through the engine like any other contract.

Then it measures (median and p95 after a warm-up; the SQL statement count of one request), prints
``EXPLAIN QUERY PLAN`` (SQLite) / ``EXPLAIN`` (PostgreSQL) of the queue queries and flags full table scans.
Never used for assertions. Run: ``make bench-web`` (``--quick``; ``--no-postgres``; ``--contracts N``).
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import json
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import event, func, insert, select, text
from sqlalchemy.exc import DBAPIError
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scratch import scratch_postgres  # noqa: E402

from models import AuditChain, AuditEvent, Instance, Notification, Step, TaskRow, Timer  # noqa: E402
from tests.web import WebClient, form_fields  # noqa: E402
from workflows import config  # noqa: E402
from workflows.clock import FrozenClock  # noqa: E402
from workflows.demo import sample_pdf  # noqa: E402
from workflows.runtime import Runtime  # noqa: E402
from workflows.schema import upgrade  # noqa: E402
from workflows.services import (  # noqa: E402
    accounts,
    attachments,
    audit,
    deployments,
    instances,
    integrity,
    tasks,
    timers,
    tokens,
)

FAST_HASH = "pbkdf2:sha256:1000"
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai
TZ = ZoneInfo("Asia/Shanghai")
SEED = 20261123
PER_PAGE = 20  # the web queue's page size
# tasks whose form takes a file (the signed contract, the acceptance certificate): field, file name
EVIDENCE = {"customer_signature": ("customer_evidence", "signed-contract.pdf"),
            "customer_acceptance": ("acceptance_certificate", "acceptance-certificate.pdf")}
EVIDENCE_PDF = sample_pdf("Lvyue benchmark", "Signed contract / acceptance certificate")

# team -> (sales reps, supervisor, manager); east is the demo team, west and north are added
TEAMS = {"east": (("rep1", "rep2"), "sup1", "mgr1"),
         "west": (("rep3", "rep4"), "sup2", "mgr2"),
         "north": (("rep5", "rep6"), "sup3", "mgr3")}
EXTRA_USERS = [
    ("rep3", "赵磊 Zhao Lei", ["sales_rep"], "west"), ("rep4", "钱芳 Qian Fang", ["sales_rep"], "west"),
    ("sup2", "孙浩 Sun Hao", ["supervisor"], "west"), ("mgr2", "周婷 Zhou Ting", ["manager"], "west"),
    ("rep5", "吴昊 Wu Hao", ["sales_rep"], "north"), ("rep6", "郑洁 Zheng Jie", ["sales_rep"], "north"),
    ("sup3", "冯刚 Feng Gang", ["supervisor"], "north"), ("mgr3", "何静 He Jing", ["manager"], "north"),
]
ROLE_USER = {"director": "dir1", "legal": "legal1", "finance": "fin1", "delivery": "dlv1", "after_sales": "svc1"}
SERVICE_ACCOUNT = "erp-bench"

CITIES = [("苏州", "Suzhou"), ("杭州", "Hangzhou"), ("宁波", "Ningbo"), ("南京", "Nanjing"), ("上海", "Shanghai"),
          ("北京", "Beijing"), ("深圳", "Shenzhen"), ("青岛", "Qingdao"), ("武汉", "Wuhan"), ("成都", "Chengdu"),
          ("西安", "Xi'an"), ("重庆", "Chongqing"), ("天津", "Tianjin"), ("厦门", "Xiamen"), ("长沙", "Changsha"),
          ("郑州", "Zhengzhou"), ("合肥", "Hefei"), ("济南", "Jinan"), ("无锡", "Wuxi"), ("佛山", "Foshan"),
          ("东莞", "Dongguan"), ("大连", "Dalian"), ("沈阳", "Shenyang"), ("昆明", "Kunming"), ("福州", "Fuzhou")]
TRADES = [("精密零件", "Precision Parts"), ("绿源食品", "Green Source Foods"), ("港通物流", "Port Logistics"),
          ("化工", "Chemical"), ("重工", "Heavy Industry"), ("建工", "Construction"), ("电子", "Electronics"),
          ("船舶", "Marine"), ("汽配", "Auto Parts"), ("机械", "Machinery"), ("纺织", "Textiles"),
          ("医疗器械", "Medical Devices"), ("新能源", "New Energy"), ("包装", "Packaging"), ("钢构", "Steel Works"),
          ("家电", "Appliances"), ("制药", "Pharma"), ("印刷", "Printing"), ("橡塑", "Rubber & Plastics"),
          ("环保设备", "Environmental Equipment")]
PRODUCTS = {"small": "全自动包装机 Automatic packaging machine ZB-320", "risky": "灌装机 Filling machine GZ-8",
            "medium": "3 吨电动叉车 3 t electric forklift", "large": "高速贴片机 High-speed SMT placement machine",
            "huge": "数控龙门加工中心 CNC gantry machining centre GMC-3022"}
AMOUNTS = {"small": (5_000, 48_000), "risky": (5_000, 48_000), "medium": (55_000, 190_000),
           "large": (210_000, 950_000), "huge": (1_100_000, 3_000_000)}
CLASS_WEIGHTS = {"small": 40, "medium": 30, "large": 15, "huge": 5, "risky": 10}
REVIEWS = {"small": [], "risky": ["finance_review"], "medium": ["manager_review"],
           "large": ["manager_review", "legal_review", "finance_review"],
           "huge": ["manager_review", "director_review", "legal_review", "finance_review"]}
TAIL = ["draft_contract", "legal_contract_check", "sign_company", "customer_signature", "file_contract",
        "execute_delivery", "customer_acceptance", "service_onboarding", "record_payment", "record_payment"]
ORDER = ["prepare_quote", "supervisor_review", "manager_review", "director_review", "legal_review",
         "finance_review", *TAIL[:-1], "overdue_escalation"]
ALL = tuple(CLASS_WEIGHTS)


@dataclass(frozen=True)
class Scenario:
    name: str
    weight: int
    stop: tuple[str, ...] | None  # leave the contract when one of these is open; None: run to its end
    classes: tuple[str, ...] = ALL
    send_backs: int = 0
    reject: bool = False


SCENARIOS = [
    Scenario("new inquiry", 10, ("prepare_quote",)),
    Scenario("sent back once", 4, ("prepare_quote",), send_backs=1),
    Scenario("supervisor review", 14, ("supervisor_review",)),
    Scenario("manager review", 8, ("manager_review",), ("medium", "large", "huge")),
    Scenario("director review", 3, ("director_review",), ("huge",)),
    Scenario("legal/finance review", 7, ("legal_review", "finance_review"), ("large", "huge", "risky")),
    Scenario("draft contract", 9, ("draft_contract",)),
    Scenario("legal contract check", 4, ("legal_contract_check",)),
    Scenario("company signature", 3, ("sign_company",)),
    Scenario("customer signature", 5, ("customer_signature",)),
    Scenario("file contract", 2, ("file_contract",)),
    Scenario("delivery", 5, ("execute_delivery",)),
    Scenario("acceptance", 3, ("customer_acceptance",)),
    Scenario("service onboarding", 2, ("service_onboarding",)),
    Scenario("collection", 4, ("record_payment",)),
    Scenario("fulfilled", 10, None),
    Scenario("rejected", 4, None, reject=True),
]
LONG_STOPS = [("supervisor_review",), ("draft_contract",), None, ("customer_signature",), ("prepare_quote",)]


@dataclass
class Contract:
    idx: int
    team: str
    starter: str
    cls: str
    name: str
    scenario: Scenario
    start: datetime
    gaps: list[float]  # hours between actions, as planned
    long: bool = False
    instance_id: int | None = None
    business_key: str | None = None
    sent_back: int = 0
    plan: list[dict[str, str]] = field(default_factory=list)
    paid: int = 0
    actions: int = 0
    done: bool = False
    items: list[dict] = field(default_factory=list)

    @property
    def risk(self) -> str:
        return "medium" if self.cls == "risky" else "low"

    def path(self) -> list[str]:
        return ["prepare_quote", "supervisor_review", *REVIEWS[self.cls], *TAIL]


# --- helpers --------------------------------------------------------------------------------------------------

def _h(hours: float) -> timedelta:
    return timedelta(hours=hours)


def _day(when: datetime, days: int = 0) -> str:
    return (when.astimezone(TZ).date() + timedelta(days=days)).isoformat()


_CUSTOMER_SEQ = itertools.count(1)


def _customer(rng: random.Random) -> str:
    """A customer name of its own: each belongs to the rep who first quotes it, and another rep quoting it would be
    refused (no 抢单), so names never repeat within a run."""
    (city_zh, city_en), (trade_zh, trade_en) = rng.choice(CITIES), rng.choice(TRADES)
    suffix = f"{rng.randint(1, 99)}-{next(_CUSTOMER_SEQ)}"
    return f"{city_zh}{trade_zh}{suffix}号 {city_en} {trade_en} No. {suffix}"


def _runtime(url: str, clock: FrozenClock) -> Runtime:
    rt = Runtime(url, clock=clock, password_method=FAST_HASH)
    upgrade(rt.engine)
    accounts.ensure_demo_users(rt)
    for username, name, roles, team in EXTRA_USERS:
        accounts.create_user(rt, username, accounts.DEMO_PASSWORD, roles, display_name=name, team=team)
    deployments.deploy_path(rt, config.bpmn_dir(), comment="web bench")
    return rt


# --- contracts through the engine -------------------------------------------------------------------------------

def plan_contracts(rng: random.Random, n: int, n_long: int) -> list[Contract]:
    contracts = []
    weights = [s.weight for s in SCENARIOS]
    for i in range(n):
        team = rng.choice(list(TEAMS))
        starter = rng.choice(TEAMS[team][0])
        if i < n_long:  # rep1's old customers, 30 send-back passes each
            scenario = Scenario("long history", 0, LONG_STOPS[i % len(LONG_STOPS)], send_backs=30)
            team, starter, cls = "east", "rep1", "medium"
        else:
            scenario = rng.choices(SCENARIOS, weights)[0]
            cls = rng.choices(scenario.classes, [CLASS_WEIGHTS[c] for c in scenario.classes])[0]
        c = Contract(i, team, starter, cls, _customer(rng), scenario, NOW, [], long=i < n_long)
        path = c.path()
        if scenario.stop is None:
            depth = 2 if scenario.reject else len(path)
        else:
            depth = min(path.index(s) for s in scenario.stop if s in path)
        depth += 2 * scenario.send_backs
        if c.long:
            age = _h(24 * rng.uniform(150, 250))
            wait = _h(rng.uniform(0, 72)) if scenario.stop else timedelta(0)
            per = (age - wait) / max(depth, 1) / timedelta(hours=1)
            c.gaps = [per * rng.uniform(0.6, 1.4) for _ in range(depth)]
            c.start = NOW - age
        elif scenario.stop is None:  # finished long ago (timers wait for the installments in between)
            c.gaps = [rng.uniform(4, 48) for _ in range(depth)]
            c.start = NOW - _h(24 * rng.uniform(120 if not scenario.reject else 5, 330))
        else:  # arrives at its stage, then has waited up to four days (some tasks are overdue)
            c.gaps = [rng.uniform(2, 30) for _ in range(depth)]
            c.start = NOW - _h(sum(c.gaps)) - _h(rng.uniform(0, 96))
            if "record_payment" in scenario.stop:  # the first installment falls due 25 days after drafting
                c.start -= timedelta(days=25)
        low, high = AMOUNTS[cls]
        qty = rng.randint(1, 4)
        price = Decimal(rng.randint(low, high)) / qty
        c.items = [{"product": PRODUCTS[cls], "quantity": qty, "unit_price": str(price.quantize(Decimal("0.01")))}]
        contracts.append(c)
    return contracts


class Builder:
    """Drives the planned contracts through the services on one timeline, firing timers as time passes."""

    def __init__(self, rt: Runtime, clock: FrozenClock, rng: random.Random) -> None:
        self.rt, self.clock, self.rng = rt, clock, rng
        self.users: dict[str, accounts.UserView] = {}
        self.events: list[tuple[datetime, int, int]] = []
        self.seq = 0

    def user(self, name: str) -> accounts.UserView:
        if name not in self.users:
            self.users[name] = accounts.get_user(self.rt, name)
        return self.users[name]

    def actor(self, c: Contract, role: str) -> accounts.UserView:
        _, sup, mgr = TEAMS[c.team]
        name = {"sales_rep": c.starter, "supervisor": sup, "manager": mgr}.get(role) or ROLE_USER[role]
        return self.user(name)

    def schedule(self, c: Contract, when: datetime) -> None:
        if when > NOW:
            c.done = True  # it stays where it is now
            return
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, c.idx))

    def run(self, contracts: list[Contract], label: str) -> None:
        for c in contracts:
            self.schedule(c, c.start)
        with tqdm(total=len(contracts), desc=f"{label}: contracts through the engine", unit="contract",
                  file=sys.stderr, leave=False) as bar:
            while self.events:
                when, _, idx = heapq.heappop(self.events)
                c = contracts[idx]
                timers.catch_up(self.rt, self.clock, when)
                self.step(c, when)
                if c.done:
                    bar.update()
        timers.catch_up(self.rt, self.clock, NOW)

    def next_gap(self, c: Contract) -> float:
        return c.gaps[c.actions] if c.actions < len(c.gaps) else self.rng.uniform(4, 48)

    def step(self, c: Contract, when: datetime) -> None:
        if c.instance_id is None:
            started = instances.start_instance(self.rt, "quote_to_cash", self.user(c.starter),
                                               {"customer_name": c.name}, claim_first=True)
            c.instance_id, c.business_key = started.instance_id, started.business_key
            if not self.stopped(c, when):
                self.schedule(c, when + _h(c.gaps[0] if c.gaps else 4))
            return
        open_tasks = tasks.open_tasks_of_instance(self.rt, c.instance_id)
        if not open_tasks:
            with self.rt.read() as s:
                status = s.scalar(select(Instance.status).where(Instance.id == c.instance_id))
                due = s.scalar(select(func.min(Timer.due_at)).where(Timer.instance_id == c.instance_id,
                                                                     Timer.status == "waiting"))
            if status != "running" or due is None:
                c.done = True
            else:  # collection waits for an installment's date
                self.schedule(c, max(due, when) + _h(self.rng.uniform(1, 30)))
            return
        task = min(open_tasks, key=lambda t: ORDER.index(t.spec_id) if t.spec_id in ORDER else 99)
        actor, data = self.actor(c, task.role), self.payload(c, task.spec_id, when)
        if task.spec_id in EVIDENCE:  # the file its form takes, uploaded first as the form would
            field_name, file_name = EVIDENCE[task.spec_id]
            data[field_name] = attachments.attach_file(self.rt, task.id, actor, field_name, file_name, EVIDENCE_PDF)
        tasks.complete(self.rt, task.id, actor, data)
        c.actions += 1
        if not self.stopped(c, when):
            self.schedule(c, when + _h(self.next_gap(c)))

    def stopped(self, c: Contract, when: datetime) -> bool:
        """Leave the contract when its stage is reached: claim some of its open tasks a little later."""
        stop = c.scenario.stop
        if stop is None or c.sent_back < c.scenario.send_backs:
            return False
        open_tasks = tasks.open_tasks_of_instance(self.rt, c.instance_id)
        if not {t.spec_id for t in open_tasks} & set(stop):
            return False
        c.done = True
        claim_at = when + _h(self.rng.uniform(0.1, 3))
        if claim_at < NOW:
            self.clock.set(claim_at)
            for t in open_tasks:
                if t.assignee is None and self.rng.random() < (0.6 if t.spec_id == "prepare_quote" else 0.35):
                    tasks.claim(self.rt, t.id, self.actor(c, t.role))
        return True

    def payload(self, c: Contract, spec: str, when: datetime) -> dict:
        year = when.astimezone(TZ).year
        if spec == "prepare_quote":
            return {"customer_name": c.name, "customer_risk": c.risk, "line_items": c.items, "discount_pct": 0,
                    "payment_terms": "30% 预付，70% 验收后 30 天 30% advance, 70% 30 days after acceptance",
                    "delivery_date": _day(when, 30)}
        if spec == "supervisor_review":
            if c.sent_back < c.scenario.send_backs:
                c.sent_back += 1
                comment = f"第 {c.sent_back} 次退回：请核对单价。Pass {c.sent_back}: recheck the price."
                return {"supervisor_decision": "send_back", "supervisor_comment": comment}
            if c.scenario.reject:
                return {"supervisor_decision": "reject", "supervisor_comment": "客户信用不足 Customer credit too low"}
            return {"supervisor_decision": "approve"}
        if spec.endswith("_review"):
            return {f"{spec.removesuffix('_review')}_decision": "approve"}
        if spec == "draft_contract":
            with self.rt.read() as s:
                amount = s.scalar(select(Instance.amount).where(Instance.id == c.instance_id))
            first = (amount * Decimal("0.3")).quantize(Decimal("0.01"))
            c.plan = [{"amount": str(first), "due_date": _day(when, 25)},
                      {"amount": str(amount - first), "due_date": _day(when, 55)}]
            return {"contract_no": f"HT-{year}-{c.idx:05d}", "contract_terms": "标准销售合同条款 Standard sales terms",
                    "payment_plan": c.plan, "sign_by": _day(when, 7)}
        if spec == "legal_contract_check":
            return {"contract_check_decision": "approve"}
        if spec == "sign_company":
            return {"company_signatory": self.actor(c, "manager").display_name, "company_signed_on": _day(when)}
        if spec == "customer_signature":  # with the signed copy: EVIDENCE, uploaded by the caller
            return {"deal_confirmation": "signed_contract", "customer_signatory": "客户代表 Customer representative",
                    "customer_signed_on": _day(when)}
        if spec == "file_contract":
            return {"filing_no": f"BA-{year}-{c.idx:05d}", "filed_on": _day(when)}
        if spec == "execute_delivery":
            return {"delivered_on": _day(when), "delivery_note": "已到厂安装 Installed on site"}
        if spec == "customer_acceptance":
            return {"acceptance": "accepted"}
        if spec == "service_onboarding":
            return {"service_contact": "吴芳 Wu Fang", "warranty_until": _day(when, 365)}
        if spec == "record_payment":
            installment = c.plan[min(c.paid, len(c.plan) - 1)]
            c.paid += 1
            return {"amount_received": installment["amount"], "received_on": _day(when),
                    "payment_reference": f"ICBC-{c.idx:05d}-{c.paid}"}
        if spec == "overdue_escalation":
            return {"escalation_action": "已电话催款 Called the customer", "next_contact_on": _day(when, 3)}
        raise ValueError(f"no payload for {spec}")


# --- the rest: copies of those contracts ------------------------------------------------------------------------

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TABLES = {"instances": Instance.__table__, "tasks": TaskRow.__table__, "steps": Step.__table__,
          "timers": Timer.__table__, "audit_events": AuditEvent.__table__, "notifications": Notification.__table__}
TIME_COLUMNS = {"instances": ("started_at", "updated_at", "completed_at"),
                "tasks": ("created_at", "due_at", "claimed_at", "completed_at"), "steps": ("finished_at",),
                "timers": ("due_at", "fired_at"), "audit_events": ("at",), "notifications": ("created_at", "read_at")}


def _replace_text(value: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        value = value.replace(old, new)
    return value


def _json_pairs(old_key: str, new_key: str, old_name: str, new_name: str) -> list[tuple[str, str]]:
    """The spellings of the business key and customer name inside JSON text (escaped and not)."""
    pairs = [(json.dumps(old_key), json.dumps(new_key))]
    for ascii_only in (True, False):
        pairs.append((json.dumps(old_name, ensure_ascii=ascii_only)[1:-1],
                      json.dumps(new_name, ensure_ascii=ascii_only)[1:-1]))
    return pairs


class Copier:
    def __init__(self, rt: Runtime, rng: random.Random) -> None:
        self.rt, self.rng = rt, rng
        self.templates: dict[int, dict[str, list[dict]]] = {}
        self.next_id: dict[str, int] = {}
        self.key_seq: dict[str, int] = {}

    def load(self, instance_ids: list[int]) -> None:
        with self.rt.engine.connect() as conn:
            for name, table in TABLES.items():
                self.next_id[name] = (conn.scalar(select(func.max(table.c.id))) or 0) + 1
            for key in conn.scalars(select(Instance.business_key)):
                prefix, _, seq = key.rpartition("-")
                self.key_seq[prefix] = max(self.key_seq.get(prefix, 0), int(seq))
            for iid in instance_ids:
                self.templates[iid] = {"instances": []}
            for name, table in TABLES.items():
                col = table.c.id if name == "instances" else table.c.instance_id
                for row in conn.execute(select(table).where(col.in_(instance_ids)).order_by(table.c.id)):
                    d = dict(row._mapping)
                    self.templates[d["id"] if name == "instances" else d["instance_id"]].setdefault(name, []).append(d)

    def _id(self, table: str) -> int:
        value = self.next_id[table]
        self.next_id[table] += 1
        return value

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _offset(self, t: dict[str, list[dict]]) -> timedelta:
        inst = t["instances"][0]
        room = NOW - max(r["updated_at"] for r in t["instances"])  # never into the future
        if inst["status"] != "running":
            return -_h(24 * self.rng.uniform(0, 200))
        if any(r["status"] == "waiting" for r in t.get("timers", [])):
            return timedelta(0)
        return _h(self.rng.uniform(-12, min(12.0, room / timedelta(hours=1))))

    def copy(self, template_id: int, out: dict[str, list[dict]]) -> None:
        t = self.templates[template_id]
        inst = t["instances"][0]
        shift = self._offset(t)
        new_id = self._id("instances")
        started = inst["started_at"] + shift
        prefix = f"Q-{started.astimezone(TZ).year}"
        self.key_seq[prefix] = self.key_seq.get(prefix, 0) + 1
        new_key = f"{prefix}-{self.key_seq[prefix]:05d}"
        new_name = _customer(self.rng)
        pairs = _json_pairs(inst["business_key"], new_key, inst["customer_name"] or "\0", new_name)
        uuids: dict[str, str] = defaultdict(self._uuid)
        state = UUID_RE.sub(lambda m: uuids[m.group(0)], inst["state"])
        task_ids: dict[int, int] = {}

        def moved(name: str, row: dict) -> dict:
            row = dict(row)
            for col in TIME_COLUMNS[name]:
                if row[col] is not None:
                    row[col] = row[col] + shift
            return row

        out["instances"].append({**moved("instances", inst), "id": new_id, "business_key": new_key,
                                 "customer_name": new_name, "state": _replace_text(state, pairs)})
        for row in t.get("tasks", []):
            task_ids[row["id"]] = self._id("tasks")
            out["tasks"].append({**moved("tasks", row), "id": task_ids[row["id"]], "instance_id": new_id,
                                 "task_uuid": uuids[row["task_uuid"]]})
        for name in ("steps", "timers"):
            for row in t.get(name, []):
                out[name].append({**moved(name, row), "id": self._id(name), "instance_id": new_id,
                                  "task_uuid": uuids[row["task_uuid"]]})
        chain, head = audit.chain_of(new_id), (0, audit.GENESIS)  # each copy gets its own, valid hash chain
        for row in t.get("audit_events", []):
            data = json.loads(_replace_text(json.dumps(row["data"], ensure_ascii=False), pairs))
            event = {**moved("audit_events", row), "id": self._id("audit_events"), "instance_id": new_id,
                     "task_id": task_ids.get(row["task_id"]), "data": data}
            head = audit.link(event, chain, head)
            out["audit_events"].append(event)
        out["audit_chains"].append({"chain": chain, "seq": head[0], "head": head[1], "anchored_seq": 0})
        for row in t.get("notifications", []):
            params = dict(row["params"], business_key=new_key, customer=new_name)
            if params.get("task_id") in task_ids:
                params["task_id"] = task_ids[params["task_id"]]
            if isinstance(params.get("due_at"), str):
                params["due_at"] = (datetime.fromisoformat(params["due_at"]) + shift).isoformat()
            out["notifications"].append({**moved("notifications", row), "id": self._id("notifications"),
                                         "instance_id": new_id, "task_id": task_ids.get(row["task_id"]),
                                         "params": params})

    def run(self, template_ids: list[int], n: int, label: str, batch: int = 250) -> None:
        self.load(template_ids)
        with tqdm(total=n, desc=f"{label}: copies", unit="contract", file=sys.stderr, leave=False) as bar:
            done = 0
            while done < n:
                out: dict[str, list[dict]] = {name: [] for name in [*TABLES, "audit_chains"]}
                size = min(batch, n - done)
                for _ in range(size):
                    self.copy(self.rng.choice(template_ids), out)
                with self.rt.engine.begin() as conn:
                    for name, table in [*TABLES.items(), ("audit_chains", AuditChain.__table__)]:
                        if out[name]:
                            conn.execute(insert(table), out[name])
                done += size
                bar.update(size)
        report = integrity.verify_all(self.rt)  # the copies carry valid hash chains of their own
        print(f"{label}: audit record after copying: {report.summary()}", file=sys.stderr)
        if not report.ok:
            raise SystemExit("the copied audit record does not verify")
        if self.rt.postgres:
            with self.rt.engine.begin() as conn:
                for name in TABLES:
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                      f"(SELECT max(id) FROM {name}))"))


# --- building one database -------------------------------------------------------------------------------------

@dataclass
class Built:
    rt: Runtime
    long_key: str
    engine_n: int
    copies: int
    seconds_engine: float
    seconds_copy: float
    sizes: dict[str, int]
    stages: dict[str, int]
    history: int = 0  # history copies (add_history)
    seconds_history: float = 0.0


def build(url: str, n: int, engine_n: int, n_long: int, label: str, history_total: int = 0) -> Built:
    rng = random.Random(SEED)
    clock = FrozenClock(NOW)
    rt = _runtime(url, clock)
    engine_n = min(max(engine_n, 20), n)
    contracts = plan_contracts(rng, engine_n, min(n_long, engine_n))
    start = time.perf_counter()
    Builder(rt, clock, rng).run(contracts, label)
    seconds_engine = time.perf_counter() - start
    start = time.perf_counter()
    if n > engine_n:
        Copier(rt, rng).run([c.instance_id for c in contracts], n - engine_n, label)
    seconds_copy = time.perf_counter() - start
    history, seconds_history = add_history(rt, history_total, history_total * 10, label)
    if rt.postgres:  # autovacuum would have vacuumed (PostgreSQL 13+ also after inserts) and analyzed them by now
        with rt.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
            with contextlib.suppress(DBAPIError):  # needs a superuser or pg_checkpoint
                conn.execute(text("CHECKPOINT"))  # write the bulk load out now, not during the timings
    with rt.read() as s:
        sizes = {name: s.scalar(select(func.count()).select_from(table)) for name, table in TABLES.items()}
        sizes["open tasks"] = s.scalar(select(func.count()).select_from(TaskRow).where(TaskRow.status == "open"))
        stages = dict(s.execute(select(Instance.stage, func.count()).group_by(Instance.stage)).all())
    long_key = next(c.business_key for c in contracts if c.long and c.scenario.stop == ("supervisor_review",))
    return Built(rt, long_key, engine_n, max(0, n - engine_n), seconds_engine, seconds_copy, sizes,
                 {str(k): v for k, v in stages.items()}, history, seconds_history)


# --- history at volume --------------------------------------------------------------------------------------------

def _shifted(col: str, days: str, postgres: bool) -> str:
    if postgres:
        return f"{col} - ({days}) * interval '1 day'"
    # SQLAlchemy stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff': keep that shape so they sort as before
    return f"CASE WHEN {col} IS NULL THEN NULL ELSE strftime('%Y-%m-%d %H:%M:%f', {col}, '-' || ({days}) || ' days') " \
           "|| '000' END"


def add_history(rt: Runtime, instances_total: int, tasks_total: int, label: str) -> tuple[int, float]:
    """Bring the database to ``instances_total`` contracts and about ``tasks_total`` task rows with the years
    of finished contracts a real company has: copies of the finished contracts, written with INSERT … SELECT.

    A history copy has its instance row (with the stored state of its template, so it opens like one) and its
    task rows (all completed, with fresh task UUIDs), moved 2–8 days further into the past per round. It has
    no step, audit or notification rows: the queue and list queries never read those, and these copies are not
    counted when the audit record is verified (that runs before). Returns (copies, seconds)."""
    start = time.perf_counter()
    with rt.read() as s:
        have = s.scalar(select(func.count()).select_from(Instance))
        have_tasks = s.scalar(select(func.count()).select_from(TaskRow))
        counts = s.execute(select(TaskRow.instance_id, func.count()).join(Instance, Instance.id == TaskRow.instance_id)
                           .where(Instance.status != "running").group_by(TaskRow.instance_id)).all()
    need = instances_total - have
    if need <= 0 or not counts:
        return 0, 0.0
    # the fullest finished contracts first, as many as keep the average at what the task target asks for
    want_avg = max(0, tasks_total - have_tasks) / need
    counts.sort(key=lambda ic: -ic[1])
    templates, total = [], 0
    for instance_id, n in counts:
        if templates and (total + n) / (len(templates) + 1) < want_avg:
            break
        templates.append(instance_id)
        total += n
    rounds = -(-need // len(templates))
    pg = rt.postgres
    bar = tqdm(total=need, desc=f"{label}: history copies", unit="contract", file=sys.stderr, leave=False)
    done = 0
    # a bulk load builds the secondary indexes once at the end instead of row by row (the copy itself reads
    # templates by ix_tasks_instance and matches keys by the unique business key, which stay)
    deferred = [ix for table in (Instance.__table__, TaskRow.__table__) for ix in table.indexes
                if ix.name != "ix_tasks_instance"]
    with rt.engine.begin() as conn:
        for ix in deferred:
            ix.drop(conn)
    per_txn = max(1, 2_000 // len(templates))  # rounds per transaction: a commit per round cost more than the rows
    for first in range(1, rounds + 1, per_txn):
        with rt.write() as s:
            for r in range(first, min(first + per_txn, rounds + 1)):
                batch = templates[:min(len(templates), need - done)]
                if not batch:
                    break
                _copy_round(s, batch, r, pg)
                done += len(batch)
                bar.update(len(batch))
    bar.close()
    with rt.engine.begin() as conn:
        for ix in tqdm(deferred, desc=f"{label}: indexes", unit="index", file=sys.stderr, leave=False):
            ix.create(conn)
    return done, time.perf_counter() - start


def _copy_round(s, batch: list[int], r: int, pg: bool) -> None:
    """Round ``r`` of add_history: one copy of each template in ``batch``, ``-H<r>`` on its key, 2r–2r+6 days
    earlier (the same shift for a contract and its tasks)."""
    uuid_sql = "md5(random()::text || clock_timestamp()::text || t.id::text)" if pg else "lower(hex(randomblob(16)))"
    inst_cols = [c.name for c in Instance.__table__.columns if c.name != "id"]
    task_cols = [c.name for c in TaskRow.__table__.columns if c.name != "id"]
    ids = ", ".join(str(i) for i in batch)
    suffix, shift = f"-H{r}", f"{r} * 2 + (i.id % 7)"

    def value(col: str, table: str) -> str:
        if col == "business_key":
            return f"i.business_key || '{suffix}'"
        if col in TIME_COLUMNS[table]:
            return _shifted(f"{'i' if table == 'instances' else 't'}.{col}", shift, pg)
        return f"{'i' if table == 'instances' else 't'}.{col}"

    s.execute(text(f"INSERT INTO instances ({', '.join(inst_cols)}) SELECT "
                   f"{', '.join(value(c, 'instances') for c in inst_cols)} FROM instances i WHERE i.id IN ({ids})"))
    task_values = ", ".join("n.id" if c == "instance_id" else uuid_sql if c == "task_uuid" else value(c, "tasks")
                            for c in task_cols)
    s.execute(text(f"INSERT INTO tasks ({', '.join(task_cols)}) SELECT {task_values} "
                   f"FROM tasks t JOIN instances i ON i.id = t.instance_id "
                   f"JOIN instances n ON n.business_key = i.business_key || '{suffix}' WHERE i.id IN ({ids})"))


# --- measuring --------------------------------------------------------------------------------------------------

@dataclass
class Row:
    page: str
    backend: str
    median: float
    p95: float
    p99: float
    sql: float  # median time inside the database driver
    statements: str
    n: int


class StatementCounter:
    """Counts the SQL statements (not BEGIN/PRAGMA) the application sends, and the time spent executing them."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.n = 0
        self.seconds = 0.0
        self._started = 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def reset(self) -> None:
        self.n, self.seconds = 0, 0.0

    def _before(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "PRAGMA")):
            self.n += 1
        self._started = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany) -> None:
        self.seconds += time.perf_counter() - self._started

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


def _stat(samples: list[float]) -> tuple[float, float, float]:
    ms = sorted(x * 1000 for x in samples)

    def pct(q: float) -> float:
        return ms[min(len(ms) - 1, round(q * (len(ms) - 1)))]

    return statistics.median(ms), pct(0.95), pct(0.99)


def timed(label: str, backend: str, counter: StatementCounter, make: Callable[[int], Callable[[], object]],
          warmup: int, samples: int, ok: int = 200) -> Row:
    """``make(i)`` prepares request ``i`` (untimed) and returns the call that sends it; its status is checked."""
    times, sql, counts = [], [], []
    for i in range(warmup + samples):
        send = make(i)
        counter.reset()
        start = time.perf_counter()
        response = send()
        elapsed = time.perf_counter() - start
        status = getattr(response, "status_code", ok)  # a service call returns no response
        if status != ok:
            raise RuntimeError(f"{label}: HTTP {status}: {response.get_data(as_text=True)[:400]}")
        if i >= warmup:
            times.append(elapsed)
            sql.append(counter.seconds)
            counts.append(counter.n)
    median, p95, p99 = _stat(times)
    low, high = min(counts), max(counts)
    return Row(label, backend, median, p95, p99, _stat(sql)[0], str(low) if low == high else f"{low}-{high}",
               len(times))


def raw_sql(label: str, backend: str, rt: Runtime, statements: list[tuple[str, object]], warmup: int,
            samples: int) -> Row:
    """The SELECTs a page sent, replayed on a bare DBAPI connection (no ORM, no Flask, no template)."""
    conn = rt.engine.raw_connection()
    times = []
    try:
        for i in range(warmup + samples):
            start = time.perf_counter()
            cursor = conn.cursor()
            for statement, params in statements:
                cursor.execute(statement, params)
                cursor.fetchall()
            cursor.close()
            conn.rollback()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        conn.close()
    median, p95, p99 = _stat(times)
    return Row(label, backend, median, p95, p99, median, str(len(statements)), len(times))


def measure(b: Built, backend: str, warmup: int, samples: int) -> list[Row]:
    from webapp import TestConfig, create_app

    rt = b.rt
    rt.workflows.clear()  # as a freshly started web process: no workflow is cached yet
    app = create_app(TestConfig, runtime=rt)
    counter = StatementCounter(rt.engine)

    def client(name: str) -> WebClient:
        web = WebClient(app.test_client())
        web.login(name, accounts.DEMO_PASSWORD)
        return web

    rep1, sup1, dir1 = client("rep1"), client("sup1"), client("dir1")
    users = {name: accounts.get_user(rt, name) for name in ("rep1", "sup1", "dir1")}
    team_total = tasks.list_tasks(rt, users["dir1"], "team", per_page=PER_PAGE).total
    deep = max(1, min(100, -(-team_total // PER_PAGE)))
    with rt.read() as s:
        long_id = s.scalar(select(Instance.id).where(Instance.business_key == b.long_key))
    long_task = tasks.open_tasks_of_instance(rt, long_id)[0]
    with rt.read() as s:  # for comparison: a supervisor review on a contract with the shortest history
        history = (select(func.count()).select_from(AuditEvent).where(AuditEvent.instance_id == TaskRow.instance_id)
                   .scalar_subquery())
        east = select(Instance.id).where(Instance.team == users["sup1"].team)  # sup1 works for team east only
        short_task = s.scalar(select(TaskRow.id).where(TaskRow.status == "open", TaskRow.instance_id.in_(east),
                                                       TaskRow.spec_id == "supervisor_review")
                              .order_by(history, TaskRow.id.desc()).limit(1))
        history_rows = {iid: s.scalar(select(func.count()).select_from(AuditEvent)
                                      .where(AuditEvent.instance_id == iid))
                        for iid in (long_id, tasks.get_task(rt, short_task).instance_id)}

    rows = []
    gets = [
        ("GET /tasks (mine) — rep1", rep1, "/tasks"),
        ("GET /tasks?scope=roles — sup1", sup1, "/tasks?scope=roles"),
        ("GET /tasks?scope=team — sup1 (team east)", sup1, "/tasks?scope=team"),
        ("GET /tasks?scope=team — dir1 (all)", dir1, "/tasks?scope=team"),
        ("GET /tasks?scope=team&sort=-amount&due=overdue — dir1", dir1, "/tasks?scope=team&sort=-amount&due=overdue"),
        (f"GET /tasks?scope=team&page={deep} — dir1", dir1, f"/tasks?scope=team&page={deep}"),
        ("GET /contracts — dir1", dir1, "/contracts"),
        (f"GET /contracts/<key> (long history: {history_rows[long_id]} events) — dir1", dir1,
         f"/contracts/{b.long_key}"),
        (f"GET /tasks/<id> (long history: {history_rows[long_id]} events, {long_task.spec_id}) — sup1", sup1,
         f"/tasks/{long_task.id}"),
        (f"GET /tasks/<id> (short history: {min(history_rows.values())} events, supervisor_review) — sup1", sup1,
         f"/tasks/{short_task}"),
    ]
    def queue(name: str, scope: str, page: int = 1, filters: tasks.QueueFilter | None = None):
        user = users[name]
        return lambda: (tasks.list_tasks(rt, user, scope, page=page, per_page=PER_PAGE, filters=filters),
                        tasks.queue_counts(rt, user))

    services = {  # what each queue page asks the service layer for
        "/tasks": queue("rep1", "mine"),
        "/tasks?scope=roles": queue("sup1", "roles"),
        "/tasks?scope=team": None,  # two users: filled below
        "/tasks?scope=team&sort=-amount&due=overdue": queue("dir1", "team",
                                                            filters=tasks.QueueFilter(due="overdue", sort="-amount")),
        f"/tasks?scope=team&page={deep}": queue("dir1", "team", page=deep),
    }
    bar = tqdm(total=len(gets) + 5, desc=f"{backend}: pages", unit="page", file=sys.stderr, leave=False)
    for label, web, path in gets:
        if path == "/tasks?scope=team":
            services[path] = queue("dir1" if web is dir1 else "sup1", "team")
        rows.append(timed(label, backend, counter, lambda i, web=web, path=path: lambda: web.get(path),
                          warmup, samples))
        if path in services:
            rows.append(timed("  its queries through the service layer (list_tasks + queue_counts)", backend, counter,
                              lambda i, call=services[path]: call, warmup, samples))
            sent = _captured(rt, lambda web=web, path=path: web.get(path))
            rows.append(raw_sql("  the page's SELECTs, raw SQL on a DBAPI connection", backend, rt, sent, warmup,
                                samples))
        bar.update()

    # the navigation counts every page runs (4 counts for a supervisor), on their own through the service
    for name in ("sup1", "dir1"):
        rows.append(timed(f"service: queue_counts() (navigation of every page) — {name}", backend, counter,
                          lambda i, user=users[name]: lambda: tasks.queue_counts(rt, user), warmup, samples))
        bar.update()

    # the JSON API with a bearer token of a service account (as `lvyue create-token --role finance` makes it)
    account = accounts.create_service_account(rt, SERVICE_ACCOUNT, "ERP bench", ["finance"], actor=None)
    token = tokens.issue_token(rt, account.id, "web bench", actor=None)
    api = app.test_client()
    rows.append(timed("GET /api/v1/tasks?scope=roles — bearer token (finance)", backend, counter,
                      lambda i: lambda: api.get("/api/v1/tasks?scope=roles",
                                                headers={"Authorization": f"Bearer {token}"}),
                      warmup, samples))
    bar.update()

    # POST complete: sup1 approves supervisor reviews of many contracts (cold workflow cache each time)
    with rt.read() as s:
        ids = list(s.scalars(select(TaskRow.id).where(
            TaskRow.status == "open", TaskRow.spec_id == "supervisor_review", TaskRow.instance_id.in_(east),
            (TaskRow.assignee_id.is_(None)) | (TaskRow.assignee_id == users["sup1"].id),
            TaskRow.instance_id != long_id, TaskRow.id != short_task).order_by(TaskRow.id).limit(warmup + samples)))
    token_sup = sup1.csrf("/tasks")
    if len(ids) > warmup + 2:
        def approve(i: int):
            data = {"f.supervisor_decision": "approve", "version": str(tasks.get_task(rt, ids[i]).instance_version),
                    "csrf_token": token_sup}
            return lambda: sup1.client.post(f"/tasks/{ids[i]}/complete", data=data)

        rows.append(timed("POST /tasks/<id>/complete (supervisor approves) — sup1", backend, counter, approve,
                          warmup, len(ids) - warmup, ok=302))
    bar.update()

    # POST complete on the long-history contract: rep1 resubmits the quote, sup1 sends it back, and so on
    token_rep = rep1.csrf("/tasks")
    quote = form_fields({"customer_name": "复查客户 Re-checked customer", "customer_risk": "low",
                         "line_items": [{"product": PRODUCTS["medium"], "quantity": 2, "unit_price": "40000.00"}],
                         "discount_pct": 0, "payment_terms": "30% advance, 70% on delivery",
                         "delivery_date": "2027-01-15"})

    def loop(i: int):
        item = tasks.open_tasks_of_instance(rt, long_id)[0]
        if item.spec_id == "prepare_quote":
            web, data = rep1, dict(quote, csrf_token=token_rep)
        else:
            web, data = sup1, {"f.supervisor_decision": "send_back", "f.supervisor_comment": "再核对一次 Once more",
                               "csrf_token": token_sup}
        data["version"] = str(item.instance_version)
        return lambda: web.client.post(f"/tasks/{item.id}/complete", data=data)

    rows.append(timed("POST complete, long history (send-back loop) — rep1/sup1", backend, counter, loop,
                      2, samples, ok=302))
    bar.update()
    bar.close()
    counter.close()
    return rows


# --- query plans ------------------------------------------------------------------------------------------------

def _captured(rt: Runtime, call: Callable[[], object]) -> list[tuple[str, object]]:
    seen: list[tuple[str, object]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(rt.engine, "before_cursor_execute", grab)
    try:
        call()
    finally:
        event.remove(rt.engine, "before_cursor_execute", grab)
    return seen


def _scans(lines: list[str], postgres: bool) -> list[str]:
    if postgres:
        return [m.group(1) for line in lines if (m := re.search(r"Seq Scan on (\w+)", line))]
    found = []
    for line in lines:
        m = re.match(r"\s*SCAN (\w+)(?: AS \w+)?(.*)$", line)
        if m and "USING" not in m.group(2):
            found.append(m.group(1))
    return found


def explain(b: Built, backend: str) -> list[str]:
    from workflows.services import contract_view

    rt = b.rt
    rep1, sup1, dir1 = (accounts.get_user(rt, name) for name in ("rep1", "sup1", "dir1"))
    queries = [
        ("team queue, dir1 (all teams), sort=due", lambda: tasks.list_tasks(rt, dir1, "team", per_page=PER_PAGE)),
        ("team queue, sup1 (team east), sort=due", lambda: tasks.list_tasks(rt, sup1, "team", per_page=PER_PAGE)),
        ("team queue, dir1, sort=-amount&due=overdue",
         lambda: tasks.list_tasks(rt, dir1, "team", per_page=PER_PAGE,
                                  filters=tasks.QueueFilter(due="overdue", sort="-amount"))),
        ("role queue, sup1", lambda: tasks.list_tasks(rt, sup1, "roles", per_page=PER_PAGE)),
        ("my queue, rep1", lambda: tasks.list_tasks(rt, rep1, "mine", per_page=PER_PAGE)),
        ("navigation counts (every page), sup1", lambda: tasks.queue_counts(rt, sup1)),
        ("contract list, dir1", lambda: contract_view.list_contracts(rt, dir1)),
    ]
    out = [f"=== {backend}: {'EXPLAIN' if rt.postgres else 'EXPLAIN QUERY PLAN'} ==="]
    scanned: dict[str, list[str]] = defaultdict(list)
    sorted_all: list[str] = []
    with rt.engine.connect() as conn:
        for label, call in queries:
            for statement, params in _captured(rt, call):
                kind = "count" if re.match(r"\s*SELECT count\(", statement, re.I) else "page"
                if rt.postgres:
                    lines = [r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params)]
                else:
                    plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
                    depth: dict[int, int] = {0: -1}
                    lines = []
                    for node, parent, _, detail in plan:
                        depth[node] = depth.get(parent, -1) + 1
                        lines.append("  " * depth[node] + detail)
                scans = [re.sub(r"_\d+$", "", t) for t in _scans(lines, rt.postgres)]
                for table in scans:
                    scanned[table].append(f"{label} [{kind}]")
                if any("USE TEMP B-TREE FOR ORDER BY" in line or "Sort Key:" in line for line in lines):
                    sorted_all.append(f"{label} [{kind}]")
                flat = " ".join(statement.split())
                cut = flat.upper().find(" WHERE ")
                tail = flat[cut + 1:] if cut >= 0 else flat[flat.upper().find(" FROM ") + 1:]
                out.append(f"-- {label} [{kind}]  {tail[:150]}{'…' if len(tail) > 150 else ''}")
                out += ["   " + line for line in lines]
                if scans:
                    out.append(f"   ^ full table scan: {', '.join(scans)}")
        sizes = {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in scanned}
        conn.rollback()
    if not scanned:
        out.append(f"{backend}: full table scans: none")
    for table, where in scanned.items():
        out.append(f"{backend}: full table scan of {table} ({sizes[table]:,} rows) in: {'; '.join(where)}")
    if sorted_all:
        out.append(f"{backend}: every matching row sorted (no index gives the order) in: {'; '.join(sorted_all)}")
    return out


# --- main -------------------------------------------------------------------------------------------------------

def run_backend(url: str, backend: str, n: int, engine_n: int, n_long: int, warmup: int,
                samples: int, history: int) -> tuple[list[Row], list[str], Built]:
    b = build(url, n, engine_n, n_long, backend, history)
    try:
        plans = explain(b, backend)
        rows = measure(b, backend, warmup, samples)
    finally:
        b.rt.dispose()
    return rows, plans, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="500 contracts, fewer samples (CI)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--contracts", type=int, help="how many contracts (default 5000; --quick 500)")
    parser.add_argument("--engine-contracts", type=int, help="how many go through the engine (default 300; "
                                                              "--quick 150); the rest are copies")
    parser.add_argument("--history", type=int, help="then add finished contracts until there are this many, with "
                                                    "ten task rows each on average (default 100000; --quick 10000; "
                                                    "0: none)")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file and print its path")
    args = parser.parse_args()
    n = args.contracts or (500 if args.quick else 5000)
    engine_n = args.engine_contracts or (150 if args.quick else 300)
    n_long = 3 if args.quick else 8
    history = args.history if args.history is not None else (10_000 if args.quick else 100_000)
    if n < 20:
        parser.error("--contracts: at least 20")
    warmup, samples = (3, 20) if args.quick else (5, 50)

    rows: list[Row] = []
    plans: list[str] = []
    built: list[tuple[str, Built]] = []
    tmp = Path(tempfile.mkdtemp(prefix="lvyue_web_bench_"))
    try:
        r, p, b = run_backend(f"sqlite:///{tmp / 'bench.db'}", "SQLite", n, engine_n, n_long, warmup, samples,
                              history)
        rows += r
        plans += p
        built.append(("SQLite", b))
    finally:
        if args.keep:
            print(f"SQLite file kept: {tmp / 'bench.db'}", file=sys.stderr)
        else:
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()

    if not args.no_postgres:
        with scratch_postgres("lvyue_webbench") as url:
            r, p, b = run_backend(url, "PostgreSQL", n, engine_n, n_long, warmup, samples, history)
            rows += r
            plans += p
            built.append(("PostgreSQL", b))

    print()
    print(f"Lvyue web benchmark — {n} contracts in every stage, history to {history:,}; Flask test client, "
          f"{samples} requests per page after {warmup} warm-up")
    for backend, b in built:
        sizes = ", ".join(f"{k} {v:,}" for k, v in b.sizes.items())
        stages = ", ".join(f"{k} {v}" for k, v in sorted(b.stages.items(), key=lambda kv: -kv[1]))
        print(f"{backend}: {b.engine_n} contracts through the engine in {b.seconds_engine:.1f} s (of them "
              f"{n_long} with 30 send-back passes), {b.copies} copies of them in {b.seconds_copy:.1f} s")
        if b.history:
            print(f"  + {b.history:,} finished contracts of history (instance and task rows, INSERT … SELECT) in "
                  f"{b.seconds_history:.1f} s")
        print(f"  rows: {sizes}")
        print(f"  contracts by stage: {stages}")
    print()
    width = max(len(r.page) for r in rows)
    print(f"{'page':<{width}}  {'backend':<10} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'SQL ms':>7} "
          f"{'statements':>10} {'n':>4}")
    print("-" * (width + 64))
    for r in rows:
        print(f"{r.page:<{width}}  {r.backend:<10} {r.median:>7.1f} {r.p95:>7.1f} {r.p99:>7.1f} {r.sql:>7.1f} "
              f"{r.statements:>10} {r.n:>4}")
    print("-" * (width + 64))
    print("(SQL ms: median time inside the database driver per request; statements: SQL statements one request "
          "sends, without BEGIN;\n POST rows time the POST only, not the page it redirects to; the workflow cache "
          "starts empty, as in a new web process;\n a raw SQL row replays the page's SELECTs above it on a bare "
          "DBAPI connection: the floor any implementation of that page pays)")
    queue = [(page, service, raw) for page, service, raw in zip(rows, rows[1:], rows[2:], strict=False)
             if raw.page.startswith("  the page's")]
    if queue:
        print()
        for backend, _ in built:
            mine = [q for q in queue if q[0].backend == backend]
            page = [p.median / r.median for p, _, r in mine]
            service = [v.median / r.median for _, v, r in mine]
            print(f"{backend} queue pages: worst p95 {max(p.p95 for p, _, _ in mine):.1f} ms, worst p99 "
                  f"{max(p.p99 for p, _, _ in mine):.1f} ms; p50 against the raw SQL: page "
                  f"{min(page):.1f}–{max(page):.1f}×, service layer {min(service):.1f}–{max(service):.1f}×")
    print()
    for line in plans:
        print(line)


if __name__ == "__main__":
    main()
