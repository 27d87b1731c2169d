"""The outbox sent over SMTP to a real server on the loopback interface (aiosmtpd)."""

from __future__ import annotations

import email
import socket
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from email import policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from click.testing import CliRunner
from sqlalchemy import insert, select, update

from models import OutboxEmail, User
from workflows.cli import main
from workflows.config import SmtpSettings, smtp_settings
from workflows.runtime import Runtime
from workflows.services import mail

from .conftest import FAST_HASH
from .flow import Flow, quote


class Collector:
    """Keeps every message the server accepted; refuses the recipients in ``refuse``."""

    def __init__(self) -> None:
        self.envelopes = []
        self.refuse: set[str] = set()
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        with self.lock:
            self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[email.message.EmailMessage]:
        with self.lock:
            return [email.message_from_bytes(e.original_content, policy=policy.default) for e in self.envelopes]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, port: int | None = None, **kwargs) -> None:
        self.port = port or free_port()
        self.handler = Collector()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def __enter__(self) -> Server:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()

    def settings(self, **kwargs) -> SmtpSettings:
        return SmtpSettings(host="127.0.0.1", port=self.port, timeout=5, mail_from="Lvyue 履约 <lvyue@example.com>",
                            **kwargs)


@pytest.fixture
def smtp_server():
    with Server() as server:
        yield server


def _outbox(rt) -> list[OutboxEmail]:
    with rt.read() as s:
        return list(s.scalars(select(OutboxEmail).order_by(OutboxEmail.id)))


def _add_mails(rt, n: int, subject: str = "测试邮件 {i}", due: datetime | None = None) -> None:
    now = due or rt.clock.now()
    with rt.write() as s:
        s.execute(insert(OutboxEmail), [dict(to_addr=f"user{i}@example.com", subject=subject.format(i=i),
                                             body=f"正文 body {i}\n", status="pending", attempts=0, created_at=now,
                                             next_attempt_at=now) for i in range(n)])


def test_a_notification_mail_arrives_with_its_chinese_subject_intact(rt, clock, smtp_server):
    with rt.write() as s:
        s.execute(update(User).where(User.username == "sup1").values(email="zhang.wei@example.com"))
    flow = Flow(rt, data={"customer_name": "华东机械 East China Machinery"})
    flow.act("prepare_quote", "rep1", quote())
    [row] = _outbox(rt)
    assert row.subject == f"【履约】新任务：主管审核（{flow.started.business_key}）"

    clock.advance(seconds=30)
    report = mail.send_due(rt, smtp_server.settings())
    assert (report.claimed, report.sent, report.retrying, report.failed) == (1, 1, 0, 0)
    [envelope] = smtp_server.handler.envelopes
    assert envelope.mail_from == "lvyue@example.com"
    assert envelope.rcpt_tos == ["zhang.wei@example.com"]
    raw = envelope.original_content.decode("ascii")  # 7-bit on the wire: encoded words and base64
    assert "subject: =?utf-8?" in raw.lower()
    assert "content-transfer-encoding: base64" in raw.lower()
    [msg] = smtp_server.handler.messages
    assert msg["Subject"] == row.subject
    assert msg["To"] == "zhang.wei@example.com"
    assert str(msg["From"]) == "Lvyue 履约 <lvyue@example.com>"
    assert msg["Message-ID"] == f"<lvyue.outbox.{row.id}.{int(row.created_at.timestamp())}@example.com>"
    assert email.utils.parsedate_to_datetime(msg["Date"]) == clock.now().replace(microsecond=0)
    assert msg.get_content_type() == "text/plain" and msg.get_content_charset() == "utf-8"
    body = msg.get_content()
    assert "华东机械 East China Machinery" in body and "张伟 Zhang Wei，您好" in body

    [row] = _outbox(rt)
    assert (row.status, row.attempts, row.sent_at, row.last_error) == ("sent", 0, clock.now(), None)
    assert mail.send_due(rt, smtp_server.settings()).claimed == 0, "sent once"
    assert len(smtp_server.handler.envelopes) == 1


def test_an_smtp_outage_loses_nothing_and_each_mail_is_sent_once_afterwards(rt, clock):
    _add_mails(rt, 3)
    port = free_port()  # nothing listens here yet
    settings = SmtpSettings(host="127.0.0.1", port=port, timeout=5)
    report = mail.send_due(rt, settings)
    assert (report.claimed, report.sent, report.retrying, report.failed) == (3, 0, 3, 0)
    now = clock.now()
    for row in _outbox(rt):
        assert (row.status, row.attempts, row.sent_at) == ("pending", 1, None)
        assert row.next_attempt_at == now + timedelta(minutes=1) > now
        assert "ConnectionRefused" in row.last_error
    assert mail.send_due(rt, settings).claimed == 0, "backing off"

    with Server(port) as server:
        assert mail.send_due(rt, server.settings()).claimed == 0, "still backing off"
        clock.advance(minutes=1)
        report = mail.send_due(rt, server.settings())
        assert (report.claimed, report.sent) == (3, 3)
        clock.advance(hours=2)
        assert mail.send_due(rt, server.settings()).claimed == 0
        subjects = Counter(m["Subject"] for m in server.handler.messages)
    assert subjects == {"测试邮件 0": 1, "测试邮件 1": 1, "测试邮件 2": 1}
    assert {(r.status, r.attempts) for r in _outbox(rt)} == {("sent", 1)}


def test_after_ten_failed_attempts_a_mail_is_failed_for_good(rt, clock):
    _add_mails(rt, 1)
    settings = SmtpSettings(host="127.0.0.1", port=free_port(), timeout=5)
    waits = []
    for attempt in range(1, 11):
        report = mail.send_due(rt, settings)
        assert report.claimed == 1, attempt
        [row] = _outbox(rt)
        assert row.attempts == attempt
        if attempt < 10:
            assert (report.retrying, report.failed, row.status) == (1, 0, "pending")
            waits.append(row.next_attempt_at - clock.now())
            clock.set(row.next_attempt_at)
        else:
            assert (report.retrying, report.failed, row.status) == (0, 1, "failed")
    assert [w // timedelta(minutes=1) for w in waits] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    clock.advance(days=1)
    assert mail.send_due(rt, settings).claimed == 0
    [row] = _outbox(rt)
    assert (row.status, row.attempts, row.sent_at) == ("failed", 10, None)
    assert row.last_error


def test_a_refused_recipient_waits_alone_while_the_others_are_sent(rt, clock, smtp_server):
    _add_mails(rt, 3)
    smtp_server.handler.refuse.add("user1@example.com")
    report = mail.send_due(rt, smtp_server.settings())
    assert (report.sent, report.retrying) == (2, 1)
    by_addr = {r.to_addr: r for r in _outbox(rt)}
    assert by_addr["user1@example.com"].status == "pending"
    assert by_addr["user1@example.com"].attempts == 1
    assert "550" in by_addr["user1@example.com"].last_error
    assert {by_addr[a].status for a in ("user0@example.com", "user2@example.com")} == {"sent"}
    smtp_server.handler.refuse.clear()
    clock.advance(minutes=1)
    assert mail.send_due(rt, smtp_server.settings()).sent == 1
    assert sorted(e.rcpt_tos[0] for e in smtp_server.handler.envelopes) == [
        "user0@example.com", "user1@example.com", "user2@example.com"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_login_is_used_when_a_user_is_configured(rt):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login, auth_data.password) in {(b"lvyue", b"s3cret"), ("lvyue", "s3cret")}
        return AuthResult(success=ok, handled=False)

    _add_mails(rt, 2)
    with Server(authenticator=check, auth_require_tls=False, auth_required=True) as server:
        wrong = mail.send_due(rt, server.settings(user="lvyue", password="wrong"))
        assert (wrong.sent, wrong.retrying) == (0, 2)
        assert "Authentication" in _outbox(rt)[0].last_error
        rt.clock.advance(minutes=1)
        right = mail.send_due(rt, server.settings(user="lvyue", password="s3cret"))
        assert right.sent == 2
        assert len(server.handler.envelopes) == 2


def test_without_an_smtp_host_nothing_is_sent_or_touched(rt, monkeypatch):
    _add_mails(rt, 1)
    monkeypatch.delenv("LVYUE_SMTP_HOST", raising=False)
    settings = smtp_settings()
    assert not settings.enabled
    report = mail.send_due(rt, settings)
    assert report.disabled and report.claimed == 0
    [row] = _outbox(rt)
    assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, rt.clock.now())


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LVYUE_SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("LVYUE_SMTP_PORT", "587")
    monkeypatch.setenv("LVYUE_SMTP_USER", "lvyue")
    monkeypatch.setenv("LVYUE_SMTP_PASSWORD", "pw")
    monkeypatch.setenv("LVYUE_SMTP_STARTTLS", "1")
    monkeypatch.setenv("LVYUE_MAIL_FROM", "noreply@example.com")
    assert smtp_settings() == SmtpSettings(host="mail.example.com", port=587, user="lvyue", password="pw",
                                           starttls=True, mail_from="noreply@example.com")
    for name in ("LVYUE_SMTP_PORT", "LVYUE_SMTP_USER", "LVYUE_SMTP_PASSWORD", "LVYUE_SMTP_STARTTLS",
                 "LVYUE_MAIL_FROM"):
        monkeypatch.delenv(name)
    assert smtp_settings() == SmtpSettings(host="mail.example.com")
    assert SmtpSettings(host="mail.example.com").mail_from == "lvyue@localhost"


def test_two_workers_at_once_never_send_a_mail_twice(rt, db_url, clock, smtp_server):
    _add_mails(rt, 40)
    errors: list[BaseException] = []
    reports: list[tuple[int, mail.SendReport]] = []
    barrier = threading.Barrier(2)

    def work() -> None:
        runtime = Runtime(db_url, clock=clock, password_method=FAST_HASH)
        try:
            barrier.wait()
            while True:
                report = mail.send_due(runtime, smtp_server.settings(), limit=3)
                reports.append((threading.get_ident(), report))
                if not report.claimed:
                    return
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)
        finally:
            runtime.dispose()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    ids = Counter(m["Message-ID"] for m in smtp_server.handler.messages)
    assert len(ids) == 40
    assert max(ids.values()) == 1, [i for i, n in ids.items() if n > 1]
    assert sum(r.sent for _, r in reports) == 40
    per_worker = Counter()
    for who, r in reports:
        per_worker[who] += r.sent
    assert len(per_worker) == 2 and min(per_worker.values()) > 0, "both workers took part"
    assert {(r.status, r.attempts) for r in _outbox(rt)} == {("sent", 0)}


def test_the_send_mail_command_prints_counts(rt, clock, smtp_server, monkeypatch):
    _add_mails(rt, 2, due=datetime(2020, 1, 1, tzinfo=UTC))  # the command runs on the system clock
    monkeypatch.setenv("LVYUE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("LVYUE_SMTP_PORT", str(smtp_server.port))
    result = CliRunner().invoke(main, ["--db", rt.database_url, "send-mail"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stdout.strip() == "sent 2 mail(s); 0 will be retried, 0 failed for good"
    assert len(smtp_server.handler.envelopes) == 2
    monkeypatch.delenv("LVYUE_SMTP_HOST")
    result = CliRunner().invoke(main, ["--db", rt.database_url, "send-mail"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: mail sending is disabled")


def test_backoff_doubles_up_to_an_hour():
    assert [mail.backoff(n) // timedelta(minutes=1) for n in range(1, 12)] == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60, 60]
    assert datetime(2026, 1, 1, tzinfo=UTC) + mail.backoff(50) == datetime(2026, 1, 1, 1, tzinfo=UTC)


def test_mails_link_to_the_task_when_the_base_url_is_known(monkeypatch):
    from workflows.services import notifications

    params = {"task": "Supervisor review / 主管审核", "task_id": 42, "business_key": "Q-2026-00001",
              "customer": "华东机械", "role": "supervisor", "due_at": None}
    monkeypatch.delenv("LVYUE_BASE_URL", raising=False)
    _, body = notifications.render("task_arrived", params, "zh-CN")
    assert "/tasks/42" not in body
    monkeypatch.setenv("LVYUE_BASE_URL", "https://lvyue.example.com/")
    _, zh = notifications.render("task_arrived", params, "zh-CN")
    _, en = notifications.render("task_arrived", params, "en")
    assert "打开：https://lvyue.example.com/tasks/42" in zh and "Open: https://lvyue.example.com/tasks/42" in en
