"""Test helper: drive one instance through the service layer as named users."""

from __future__ import annotations

from typing import Any

from workflows.demo import sample_pdf
from workflows.runtime import Runtime
from workflows.services import accounts, attachments, instances, tasks

QUOTE = {
    "customer_name": "华东机械 East China Machinery",
    "customer_risk": "low",
    "line_items": [{"product": "CNC lathe", "quantity": 2, "unit_price": "12000.00"}],
    "discount_pct": 0,
    "payment_terms": "30% advance, 70% on acceptance",
    "delivery_date": "2026-12-20",
}
PLAN = [{"amount": "7200.00", "due_date": "2026-12-15"}, {"amount": "16800.00", "due_date": "2027-01-15"}]
SIGNED_PDF = sample_pdf("Contract HT-2026-001", "Signed by both parties")
CERTIFICATE_PDF = sample_pdf("Acceptance certificate", "Accepted")
# the file field each task with evidence takes
EVIDENCE = {"customer_signature": "customer_evidence", "customer_acceptance": "acceptance_certificate",
            "accept_complaint": "evidence"}


def quote(total_price: str = "12000.00", quantity: int = 2, **overrides: Any) -> dict[str, Any]:
    data = dict(QUOTE, **overrides)
    data["line_items"] = [{"product": "CNC lathe", "quantity": quantity, "unit_price": total_price}]
    return data


def approve(role: str) -> dict[str, Any]:
    return {f"{role}_decision": "approve"}


class Flow:
    def __init__(self, rt: Runtime, process_key: str = "quote_to_cash", starter: str = "rep1",
                 data: dict[str, Any] | None = None) -> None:
        self.rt = rt
        self.started = instances.start_instance(rt, process_key, self.user(starter), data or {})
        self.id = self.started.instance_id

    def user(self, name: str):
        return accounts.get_user(self.rt, name)

    def open(self) -> dict[str, tasks.TaskItem]:
        return {t.spec_id: t for t in tasks.open_tasks_of_instance(self.rt, self.id)}

    def open_specs(self) -> set[str]:
        return set(self.open())

    def task(self, spec_id: str) -> tasks.TaskItem:
        found = self.open()
        assert spec_id in found, f"{spec_id} is not open; open: {sorted(found)}"
        return found[spec_id]

    def act(self, spec_id: str, username: str, data: dict[str, Any]) -> tasks.Completion:
        return tasks.complete(self.rt, self.task(spec_id).id, self.user(username), data)

    def evidence(self, spec_id: str, username: str, name: str = "evidence.pdf", content: bytes | None = None) -> str:
        """Upload a file into the evidence field of the open task ``spec_id``, as its form would: the reference
        to put in the data."""
        return attachments.attach_file(self.rt, self.task(spec_id).id, self.user(username), EVIDENCE[spec_id], name,
                                       content or SIGNED_PDF)

    def signed(self, username: str = "rep1", **data: Any) -> dict[str, Any]:
        """customer_signature's data: a signed contract, its copy attached."""
        return {"deal_confirmation": "signed_contract", "customer_signatory": "客户代表",
                "customer_signed_on": "2026-11-26",
                "customer_evidence": self.evidence("customer_signature", username, "signed-contract.pdf"), **data}

    def accepted(self, username: str = "rep1", **data: Any) -> dict[str, Any]:
        """customer_acceptance's data: accepted, the certificate (验收单) attached."""
        return {"acceptance": "accepted", "acceptance_certificate": self.evidence(
            "customer_acceptance", username, "acceptance-certificate.pdf", CERTIFICATE_PDF), **data}

    def view(self) -> instances.InstanceView:
        return instances.get_instance(self.rt, self.id)

    def data(self) -> dict[str, Any]:
        return instances.instance_data(self.rt, self.id)

    # the happy path in steps, reused by many tests
    def through_contract(self, plan=PLAN) -> None:
        self.act("draft_contract", "rep1", {"contract_no": "HT-2026-001", "contract_terms": "Standard terms",
                                            "payment_plan": plan, "sign_by": "2026-12-01"})
        self.act("legal_contract_check", "legal1", {"contract_check_decision": "approve"})
        self.act("sign_company", "mgr1", {"company_signatory": "刘洋", "company_signed_on": "2026-11-25"})
        self.act("customer_signature", "rep1", self.signed())
        self.act("file_contract", "legal1", {"filing_no": "BA-0001", "filed_on": "2026-11-27"})

    def to_collection(self, plan=PLAN) -> None:
        """A small quote approved by the supervisor, signed, filed, delivered: collection waits on its timers."""
        self.act("prepare_quote", "rep1", quote())
        self.act("supervisor_review", "sup1", approve("supervisor"))
        self.through_contract(plan=plan)
        self.through_delivery()

    def through_delivery(self) -> None:
        self.act("execute_delivery", "dlv1", {"delivered_on": "2026-12-10"})
        self.act("customer_acceptance", "rep1", self.accepted())
        self.act("service_onboarding", "svc1", {"service_contact": "吴芳", "warranty_until": "2027-12-10"})
