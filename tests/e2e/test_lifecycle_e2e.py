"""One contract from the first quote to the last payment, clicked through in headless Chromium.

Every step is done by the demo user whose role owns it, in their own browser context, through the pages a person
would use: the navigation, the queues, the task page's form (radios, the add-row button, the submit button), the
reassign panel and the language switch. Along the way: a validation error corrected, a send-back and the rework,
a reassignment, two kinds of stale submit, manager + parallel legal/finance reviews for a large amount, and the
collection phase driven by moving the FrozenClock and running the timer worker. Screenshots of the main pages
in Chinese and English go to tests/artifacts/screenshots/.

A smaller test starts a complaint against a contract from the start page.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from playwright.sync_api import Page, expect
from sqlalchemy import select

from models import Instance, TaskRow
from workflows.services import accounts
from workflows.services.timers import fire_due_timers

from ..flow import CERTIFICATE_PDF, SIGNED_PDF, Flow
from .conftest import log_in

CUSTOMER = "华南精密 South China Precision"
COMMENT = "请单列安装调试费，并把折扣定为 5%。Please list installation separately and set the discount to 5%."
REASSIGN_REASON = "本周出差 Travelling this week"
PLAN = [("91200.00", "2026-12-15"), ("212800.00", "2027-01-15")]  # 304,000 after the 5 % discount


# --------------------------------------------------------------------------------------------- helpers


def open_task_id(rt, spec_id: str, instance_id: int | None = None) -> int:
    with rt.read() as s:
        q = select(TaskRow.id).where(TaskRow.spec_id == spec_id, TaskRow.status == "open")
        if instance_id is not None:
            q = q.where(TaskRow.instance_id == instance_id)
        found = s.scalars(q.order_by(TaskRow.id.desc())).first()
    assert found, f"no open task {spec_id}"
    return found


def field(page: Page, name: str):
    """The input (or textarea/select) of a form field, by its posted name: ``field(page, "line_items.0.quantity")``.
    The task's own form comes first on the page (a reviewer's add-an-approver form below repeats its comment)."""
    return page.locator(f'[name="f.{name}"]').first


def cell_error(page: Page, name: str):
    """The error shown in the list-row cell of a field."""
    return page.locator("td.has-error", has=field(page, name)).locator(".field-error")


def attach(page: Page, name: str, filename: str, content: bytes, mime: str = "application/pdf") -> None:
    """Choose a file for the file field ``name`` (its <input type=file> is named upload.<name>)."""
    page.locator(f'input[type=file][name="upload.{name}"]').set_input_files(
        {"name": filename, "mimeType": mime, "buffer": content})


def choose(page: Page, name: str, value: str) -> None:
    page.locator(f'input[type=radio][name="f.{name}"][value="{value}"]').check()


def submit(page: Page) -> None:
    page.locator("[data-action=complete]").click()
    page.wait_for_load_state()


def expect_done(page: Page) -> None:
    """The completion went through: we were redirected with the green confirmation."""
    expect(page.locator(".flash-ok")).to_be_visible()
    expect(page.locator("[data-problem]")).to_have_count(0)


def counts(page: Page, reload: bool = True, **expected: int) -> None:
    """Check the numbers in the navigation (``mine=1, roles=0``), by default after reloading the page."""
    if reload:
        page.reload()
    for scope, number in expected.items():
        expect(page.locator(f"[data-count={scope}]")).to_have_text(str(number))


def go_queue(page: Page, scope: str) -> None:
    page.locator(f"nav.mainnav a:has([data-count={scope}])").click()
    expect(page).to_have_url(re.compile(rf"/tasks\?scope={scope}$"))


def open_from_queue(page: Page, scope: str, task_id: int, shoot=None) -> None:
    """Go to a queue through the navigation and open the task from its row (``shoot()`` the queue first)."""
    go_queue(page, scope)
    if shoot is not None:
        shoot()
    page.locator(f'tr[data-task-id="{task_id}"] a.task-link').click()
    expect(page).to_have_url(re.compile(rf"/tasks/{task_id}$"))


def switch_language(page: Page, lang: str) -> None:
    page.locator(f'.langswitch button[value="{lang}"]').click()
    expect(page.locator("html")).to_have_attribute("lang", lang)


def both_languages(page: Page, shot, name: str) -> None:
    """Screenshot a (GET) page in its current language, switch with the top-bar button, screenshot, switch back."""
    first = page.locator("html").get_attribute("lang")
    other = "en" if first == "zh-CN" else "zh-CN"
    url = page.url.rstrip("?")
    shot(page, name)
    switch_language(page, other)
    assert page.url.rstrip("?") == url, f"the language switch left {url} for {page.url}"
    shot(page, name)
    switch_language(page, first)


# --------------------------------------------------------------------------------------------- the lifecycle


def test_contract_from_quote_to_last_payment(rt, clock, new_page, page_as, shot):
    accounts.create_user(rt, "legal2", accounts.DEMO_PASSWORD, ["legal"], display_name="钱程 Qian Cheng")
    accounts.create_user(rt, "fin2", accounts.DEMO_PASSWORD, ["finance"], display_name="何静 He Jing")

    # -- the login page, in both languages; the rep logs in through it
    rep = new_page("rep1")
    rep.goto("/")
    expect(rep).to_have_url(re.compile(r"/login"))
    expect(rep.locator("html")).to_have_attribute("lang", "zh-CN")  # Chinese by default
    both_languages(rep, shot, "01-login")
    log_in(rep, "rep1")
    expect(rep).to_have_url(re.compile(r"/tasks$"))
    counts(rep, mine=0, roles=0, reload=False)

    # -- the rep starts a quote from the start page and lands on the claimed first task
    rep.locator("nav.mainnav a[href='/start']").click()
    both_languages(rep, shot, "03-start")
    rep.locator("[data-action=start-quote_to_cash]").click()
    expect(rep).to_have_url(re.compile(r"/tasks/\d+$"))
    quote_task = int(rep.url.rsplit("/", 1)[1])
    with rt.read() as s:
        instance_id, key = s.execute(select(Instance.id, Instance.business_key)
                                     .join(TaskRow, TaskRow.instance_id == Instance.id)
                                     .where(TaskRow.id == quote_task)).one()
    expect(rep.locator("[data-holder]")).to_contain_text("王小明")
    counts(rep, mine=1, roles=0, reload=False)
    open_from_queue(rep, "mine", quote_task, shoot=lambda: both_languages(rep, shot, "02-my-tasks"))
    both_languages(rep, shot, "04-task-form")

    # -- (a) the quote with a mistake: a fractional quantity; a second line item added with the add-row button
    field(rep, "customer_name").fill(CUSTOMER)
    choose(rep, "customer_risk", "low")
    field(rep, "line_items.0.product").fill("CNC 数控车床 CK6150")
    field(rep, "line_items.0.quantity").fill("1.5")
    field(rep, "line_items.0.unit_price").fill("150000.00")
    rep.locator("[data-add-row]").click()
    expect(rep.locator("tbody[data-rows] tr[data-row]")).to_have_count(2)
    expect(field(rep, "line_items.1.product")).to_be_focused()
    field(rep, "line_items.1.product").fill("安装调试 Installation")
    field(rep, "line_items.1.quantity").fill("1")
    field(rep, "line_items.1.unit_price").fill("20000")
    field(rep, "discount_pct").fill("0")
    field(rep, "payment_terms").fill("30% 预付，70% 验收后 / 30% advance, 70% on acceptance")
    field(rep, "delivery_date").fill("2026-12-20")
    field(rep, "notes").fill("客户要求12月底前交付")
    submit(rep)
    expect(rep.locator("[data-problem]")).to_be_visible()
    expect(cell_error(rep, "line_items.0.quantity")).to_be_visible()
    expect(field(rep, "line_items.0.quantity")).to_have_value("1.5")
    expect(field(rep, "line_items.0.quantity")).to_have_attribute("aria-invalid", "true")
    expect(field(rep, "customer_name")).to_have_value(CUSTOMER)  # everything else is still there
    expect(field(rep, "line_items.1.product")).to_have_value("安装调试 Installation")
    expect(field(rep, "delivery_date")).to_have_value("2026-12-20")
    expect(rep.locator('input[name="f.customer_risk"][value="low"]')).to_be_checked()
    shot(rep, "05-task-validation-error")
    field(rep, "line_items.0.quantity").fill("2")
    submit(rep)
    expect_done(rep)
    expect(rep).to_have_url(re.compile(r"/tasks$"))
    counts(rep, mine=0)

    # -- (b) the supervisor finds it in the role queue and the team view, and sends it back with a comment
    sup = page_as("sup1")
    review = open_task_id(rt, "supervisor_review", instance_id)
    counts(sup, mine=0, roles=1, team=1)
    go_queue(sup, "roles")
    expect(sup.locator(f'tr[data-task-id="{review}"]')).to_contain_text(CUSTOMER)
    both_languages(sup, shot, "06-role-queue")
    go_queue(sup, "team")
    expect(sup.locator(f'tr[data-task-id="{review}"]')).to_be_visible()
    both_languages(sup, shot, "07-team-queue")
    open_from_queue(sup, "roles", review)
    expect(sup.locator(".instructions")).to_contain_text("CNC 数控车床 CK6150")
    choose(sup, "supervisor_decision", "send_back")
    field(sup, "supervisor_comment").fill(COMMENT)
    submit(sup)
    expect_done(sup)
    counts(sup, roles=0, team=1)  # the rework is the team's rep's task now

    # -- the rep sees the comment (instructions and history), edits in English, trips over a price, resubmits
    rework = open_task_id(rt, "prepare_quote", instance_id)
    assert rework != quote_task
    counts(rep, mine=1, roles=0)  # a send-back returns the quote to the rep who wrote it
    open_from_queue(rep, "mine", rework)
    expect(rep.locator(".instructions")).to_contain_text(COMMENT)
    entry = rep.locator(".task-side .history li.history-complete").filter(has_text=COMMENT)
    entry.locator("summary").click()
    expect(entry.locator("dd", has_text=COMMENT)).to_be_visible()
    switch_language(rep, "en")
    expect(field(rep, "customer_name")).to_have_value(CUSTOMER)  # the first round's values are offered again
    shot(rep, "08-task-sent-back")
    field(rep, "discount_pct").fill("5")
    field(rep, "line_items.1.unit_price").fill("20k")
    submit(rep)
    expect(rep.locator("[data-problem]")).to_be_visible()
    expect(cell_error(rep, "line_items.1.unit_price")).to_be_visible()
    expect(field(rep, "line_items.1.unit_price")).to_have_value("20k")
    expect(field(rep, "discount_pct")).to_have_value("5")
    shot(rep, "05-task-validation-error")
    field(rep, "line_items.1.unit_price").fill("20,000.00")
    submit(rep)
    expect_done(rep)
    switch_language(rep, "zh-CN")

    # -- (e) 304,000: supervisor, then manager, then legal and finance in parallel
    review = open_task_id(rt, "supervisor_review", instance_id)
    open_from_queue(sup, "roles", review)
    expect(sup.locator(".instructions")).to_contain_text("304")
    choose(sup, "supervisor_decision", "approve")
    submit(sup)
    expect_done(sup)

    mgr = page_as("mgr1")
    manager_task = open_task_id(rt, "manager_review", instance_id)
    counts(mgr, mine=0, roles=1)
    go_queue(mgr, "roles")
    mgr.locator(f'tr[data-task-id="{manager_task}"] button[type=submit]').click()  # claim from the queue
    expect(mgr).to_have_url(re.compile(rf"/tasks/{manager_task}$"))
    expect(mgr.locator("[data-holder]")).to_contain_text("刘洋")
    counts(mgr, mine=1, roles=0)
    choose(mgr, "manager_decision", "approve")
    field(mgr, "manager_comment").fill("同意，注意回款节奏。")
    submit(mgr)
    expect_done(mgr)
    counts(mgr, mine=0, roles=0)

    legal = page_as("legal1")
    fin = page_as("fin1")
    legal_task = open_task_id(rt, "legal_review", instance_id)
    finance_task = open_task_id(rt, "finance_review", instance_id)
    counts(legal, roles=1)
    counts(fin, roles=1)

    status = page_as("owner1")
    status.goto("/status")
    expect(status.locator('[data-role="legal"]')).to_have_text("1")
    expect(status.locator('[data-role="finance"]')).to_have_text("1")
    both_languages(status, shot, "09-status")

    # -- finance opens its review first; legal finishes in between: finance's submit is stale (conflict, Chinese)
    open_from_queue(fin, "roles", finance_task)
    choose(fin, "finance_decision", "approve")
    field(fin, "finance_comment").fill("付款条件可接受 Payment terms acceptable")
    open_from_queue(legal, "roles", legal_task)
    choose(legal, "legal_decision", "approve")
    submit(legal)
    expect_done(legal)
    submit(fin)
    expect(fin.locator("[data-problem]")).to_be_visible()
    expect(field(fin, "finance_comment")).to_have_value("付款条件可接受 Payment terms acceptable")
    expect(fin.locator('input[type=radio][name="f.finance_decision"][value="approve"]')).to_be_checked()
    shot(fin, "10-conflict")
    submit(fin)  # the page now carries the current version: sending it again goes through
    expect_done(fin)
    counts(fin, mine=0, roles=0)

    # -- the rep drafts the contract with a two-installment payment plan
    draft = open_task_id(rt, "draft_contract", instance_id)
    counts(rep, roles=1)
    open_from_queue(rep, "roles", draft)
    field(rep, "contract_no").fill("HT-2026-0888")
    field(rep, "contract_terms").fill("设备两台及安装调试；质保一年。\nTwo machines, installation, one-year warranty.")
    field(rep, "payment_plan.0.amount").fill(PLAN[0][0])
    field(rep, "payment_plan.0.due_date").fill(PLAN[0][1])
    rep.locator("[data-array]:has([name^='f.payment_plan']) [data-add-row]").click()
    field(rep, "payment_plan.1.amount").fill(PLAN[1][0])
    field(rep, "payment_plan.1.due_date").fill(PLAN[1][1])
    field(rep, "sign_by").fill("2026-12-01")
    submit(rep)
    expect_done(rep)

    # -- (c) legal1 claims the contract check and reassigns it to legal2, who completes it
    check = open_task_id(rt, "legal_contract_check", instance_id)
    open_from_queue(legal, "roles", check)
    legal.locator("[data-action=claim]").click()
    expect(legal.locator("[data-holder]")).to_contain_text("赵敏")
    counts(legal, mine=1, roles=0)
    legal.locator("details.reassign summary").click()
    legal.locator("#reassign-to").select_option("legal2")
    legal.locator("#reassign-reason").fill(REASSIGN_REASON)
    legal.locator("[data-action=reassign]").click()
    expect(legal.locator(".flash-ok")).to_be_visible()
    expect(legal.locator("[data-holder]")).to_contain_text("钱程")
    expect(legal.locator("[data-action=complete]")).to_have_count(0)  # no longer theirs to complete
    counts(legal, mine=0, roles=0)
    legal2 = page_as("legal2")
    counts(legal2, mine=1, roles=0)
    open_from_queue(legal2, "mine", check)
    expect(legal2.locator(".task-side .history")).to_contain_text(REASSIGN_REASON)
    choose(legal2, "contract_check_decision", "approve")
    submit(legal2)
    expect_done(legal2)
    counts(legal2, mine=0)

    # -- signatures, filing, delivery, acceptance, service onboarding
    open_from_queue(mgr, "roles", open_task_id(rt, "sign_company", instance_id))
    field(mgr, "company_signatory").fill("刘洋")
    field(mgr, "company_signed_on").fill("2026-11-25")
    submit(mgr)
    expect_done(mgr)

    open_from_queue(rep, "roles", open_task_id(rt, "customer_signature", instance_id))
    choose(rep, "deal_confirmation", "signed_contract")
    field(rep, "customer_signatory").fill("黄总 Mr Huang")
    field(rep, "customer_signed_on").fill("2026-11-26")
    attach(rep, "customer_evidence", "signed-contract.pdf", SIGNED_PDF)
    submit(rep)
    expect_done(rep)

    open_from_queue(legal2, "roles", open_task_id(rt, "file_contract", instance_id))
    field(legal2, "filing_no").fill("BA-2026-0042")
    field(legal2, "filed_on").fill("2026-11-27")
    submit(legal2)
    expect_done(legal2)

    dlv = page_as("dlv1")
    open_from_queue(dlv, "roles", open_task_id(rt, "execute_delivery", instance_id))
    field(dlv, "delivered_on").fill("2026-12-10")
    field(dlv, "delivery_note").fill("两台设备已送达并完成安装。")
    submit(dlv)
    expect_done(dlv)

    open_from_queue(rep, "roles", open_task_id(rt, "customer_acceptance", instance_id))
    choose(rep, "acceptance", "accepted")
    attach(rep, "acceptance_certificate", "验收单.pdf", CERTIFICATE_PDF)
    submit(rep)
    expect_done(rep)

    svc = page_as("svc1")
    open_from_queue(svc, "roles", open_task_id(rt, "service_onboarding", instance_id))
    field(svc, "service_contact").fill("吴芳")
    field(svc, "warranty_until").fill("2027-12-10")
    submit(svc)
    expect_done(svc)

    rep.goto(f"/contracts/{key}")
    expect(rep.locator(".page-head .stage")).to_be_visible()  # a running contract shows its stage
    expect(rep.locator(".summary")).to_contain_text(CUSTOMER)  # its data while timers wait
    both_languages(rep, shot, "11-contract-collection")

    # -- (f) collection: the clock passes the first due date, the worker fires the timer, finance records it
    counts(fin, roles=0)
    clock.set(datetime(2026, 12, 15, 2, 0, tzinfo=UTC))  # 10:00 in Shanghai on the due date
    assert fire_due_timers(rt).fired == 1
    first = open_task_id(rt, "record_payment", instance_id)
    counts(fin, roles=1)
    fin2 = page_as("fin2")
    counts(fin2, roles=1)
    switch_language(fin2, "en")

    # (d) fin1 and fin2 open the same task; fin1 records the payment first; fin2's submit is refused
    open_from_queue(fin, "roles", first)
    open_from_queue(fin2, "roles", first)
    both_languages(fin, shot, "12-task-record-payment")
    for page, reference in ((fin, "ICBC-20261215-01"), (fin2, "TYPED-BY-FIN2")):
        field(page, "amount_received").fill(PLAN[0][0])
        field(page, "received_on").fill("2026-12-15")
        field(page, "payment_reference").fill(reference)
    submit(fin)
    expect_done(fin)
    submit(fin2)
    expect(fin2.locator("[data-problem]")).to_be_visible()
    expect(fin2.locator("[data-problem]")).to_contain_text("fin1")
    expect(field(fin2, "payment_reference")).to_have_value("TYPED-BY-FIN2")
    expect(fin2.locator("[data-action=complete]")).to_have_count(0)
    shot(fin2, "10-conflict")
    counts(fin2, mine=0, roles=0)

    # the second installment
    clock.set(datetime(2027, 1, 15, 2, 0, tzinfo=UTC))
    assert fire_due_timers(rt).fired == 1
    second = open_task_id(rt, "record_payment", instance_id)
    assert second != first
    counts(fin, mine=0, roles=1)
    open_from_queue(fin, "roles", second)
    expect(fin.locator(".instructions")).to_contain_text("212800")
    field(fin, "amount_received").fill(PLAN[1][0])
    field(fin, "received_on").fill("2027-01-15")
    field(fin, "payment_reference").fill("ICBC-20270115-02")
    submit(fin)
    expect_done(fin)
    counts(fin, mine=0, roles=0)

    # -- the contract is fulfilled: completed, ended at the fulfilled end event, nothing open
    rep.goto(f"/contracts/{key}")
    expect(rep.locator(".page-head .status-completed")).to_contain_text("合同履约完成")  # the outcome
    expect(rep.locator("a[href^='/tasks/']")).to_have_count(0)
    both_languages(rep, shot, "13-contract-fulfilled")
    counts(rep, mine=0, roles=0)
    rep.locator("nav.mainnav a[href='/contracts']").click()
    expect(rep.locator(f'tr[data-contract="{key}"]')).to_contain_text(CUSTOMER)
    both_languages(rep, shot, "14-contracts")
    with rt.read() as s:
        done = s.execute(select(Instance.status, Instance.end_event).where(Instance.id == instance_id)).one()
    assert tuple(done) == ("completed", "end_fulfilled")


# --------------------------------------------------------------------------------------------- a complaint


def test_after_sales_starts_a_complaint_against_a_contract(rt, page_as, shot):
    flow = Flow(rt)
    flow.to_collection()
    key = flow.view().business_key

    svc = page_as("svc1")
    svc.locator("nav.mainnav a[href='/start']").click()
    card = svc.locator("#start-complaint")
    expect(card).to_be_visible()
    expect(svc.locator("[data-action=start-quote_to_cash]")).to_have_count(0)  # after-sales does not quote
    card.locator('[name="f.contract_key"]').fill("Q-2026-99999")  # a typo first
    card.locator('[name="f.customer_name"]').fill("华东机械 East China Machinery")
    card.locator('[name="f.complaint_summary"]').fill("设备运行时有异响，客户要求上门检查。")
    card.locator('input[name="f.severity"][value="high"]').check()
    card.locator("[data-action=start-complaint]").click()
    expect(svc.locator("[data-problem]")).to_be_visible()
    card = svc.locator("#start-complaint")
    expect(card.locator(".field-error")).not_to_have_count(0)
    expect(card.locator('[name="f.complaint_summary"]')).to_have_value("设备运行时有异响，客户要求上门检查。")
    shot(svc, "20-start-complaint-error")
    card.locator('[name="f.contract_key"]').fill(key)
    card.locator("[data-action=start-complaint]").click()
    expect(svc.locator(".flash-ok")).to_contain_text("C-2026-00001")

    # after-sales accepts complaints: the first task is already theirs
    expect(svc).to_have_url(re.compile(r"/tasks/\d+$"))
    expect(svc.locator("[data-holder]")).to_contain_text("吴芳")
    choose(svc, "acceptance_decision", "accept")
    field(svc, "category").select_option("quality")  # a drop-down
    submit(svc)
    expect_done(svc)

    svc.goto(f"/contracts/{key}")
    related = svc.locator("a[href='/contracts/C-2026-00001']")
    expect(related).to_be_visible()
    related.click()
    expect(svc.locator("h1")).to_contain_text("C-2026-00001")
    shot(svc, "21-complaint")
