"""Sending the e-mail outbox over SMTP: at least once, never by two workers at the same time.

How a pass works (``send_due``):

1. **Claim** (one short write transaction): pick up to ``limit`` pending rows whose ``next_attempt_at``
   has come (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite the write transaction is ``BEGIN
   IMMEDIATE`` and serializes claimers) and move their ``next_attempt_at`` to a *lease*, now +
   ``CLAIM_LEASE``. Once that commits, no other worker sees the rows as due until the lease runs out.
2. **Send** outside any transaction, over one SMTP connection.
3. **Mark as we go**: each mail is marked ``sent`` in its own short transaction right after the server
   accepted it; a failed one gets ``attempts + 1``, ``last_error`` and an exponential backoff (1, 2, 4 …
   minutes, at most an hour), and after ``MAX_ATTEMPTS`` the status ``failed`` (the row stays, for people
   to see). If the connection fails (server down, disconnect, timeout) every mail of the batch not yet
   sent counts one failed attempt the same way: nothing is lost. Every mark matches the lease value too,
   so a worker that lost its lease cannot overwrite another's marks.

Why at-least-once: a worker that dies between the server's "250 OK" and its mark leaves the row
pending under its lease; when the lease runs out the mail is sent again. That is one duplicate in a rare
crash, preferred to losing a mail. The Message-ID is derived from the outbox row, so a duplicate carries
the same Message-ID and mail clients can recognize it. Two *live* workers never send the same row: a
worker stops sending a batch (and hands the rest back) once half its lease has passed, so a lease cannot
run out while its holder is still sending.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from sqlalchemy import bindparam, select, update

from models import OutboxEmail

from ..config import SmtpSettings
from ..runtime import Runtime

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
MAX_BACKOFF = timedelta(hours=1)
CLAIM_LEASE = timedelta(minutes=10)

# errors about one message; the connection stays usable (smtplib resets the transaction)
_MESSAGE_ERRORS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError,
                   smtplib.SMTPNotSupportedError)

_HELD = (OutboxEmail.id == bindparam("row_id"), OutboxEmail.status == "pending",
         OutboxEmail.next_attempt_at == bindparam("lease"))
_MARK_SENT = update(OutboxEmail).where(*_HELD).values(status="sent", sent_at=bindparam("now"))
_MARK_FAILED = update(OutboxEmail).where(*_HELD).values(
    status=bindparam("new_status"), attempts=bindparam("new_attempts"), last_error=bindparam("error"),
    next_attempt_at=bindparam("retry_at"))
_RELEASE = update(OutboxEmail).where(*_HELD).values(next_attempt_at=bindparam("now"))


@dataclass(frozen=True)
class SendReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0  # failed this time, pending again after a backoff
    failed: int = 0  # gave up: status 'failed'
    released: int = 0  # claimed but handed back unsent (lease half over)
    disabled: bool = False  # no SMTP host configured: nothing was touched

    def __str__(self) -> str:
        if self.disabled:
            return "mail sending is disabled (LVYUE_SMTP_HOST is not set)"
        return (f"sent {self.sent} mail(s); {self.retrying} will be retried, {self.failed} failed for good"
                + (f", {self.released} handed back" if self.released else ""))


class _Wrapped(Exception):
    def __str__(self) -> str:
        return str(self.__cause__ or super().__str__())


class _BadMessage(_Wrapped):
    """The outbox row cannot be made into a message."""


class _NoConnection(_Wrapped):
    """Connecting, STARTTLS or login failed: a matter of the server, not of one message."""


@dataclass(frozen=True)
class _Claimed:
    id: int
    to_addr: str
    subject: str
    body: str
    attempts: int
    created_at: datetime


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: 1, 2, 4 … minutes, at most an hour."""
    return min(timedelta(minutes=2 ** min(max(attempts - 1, 0), 12)), MAX_BACKOFF)


def build_message(smtp: SmtpSettings, row: _Claimed, now: datetime) -> EmailMessage:
    """A UTF-8 message that is 7-bit on the wire: non-ASCII headers (the Chinese subjects) become RFC 2047
    encoded words, the body base64, so no relay can mangle it."""
    sender = parseaddr(smtp.mail_from)[1] or smtp.mail_from
    domain = sender.rpartition("@")[2] or "localhost"
    msg = EmailMessage()
    msg["Subject"] = row.subject
    msg["From"] = smtp.mail_from
    msg["To"] = row.to_addr
    msg["Date"] = format_datetime(now)
    # stable per outbox row, so a resent duplicate (see the module docstring) can be recognized
    msg["Message-ID"] = f"<lvyue.outbox.{row.id}.{int(row.created_at.timestamp())}@{domain}>"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(row.body, charset="utf-8", cte="base64")  # 7-bit safe for any relay
    return msg


def _connect(smtp: SmtpSettings) -> smtplib.SMTP:
    conn = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
    try:
        conn.ehlo()
        if smtp.starttls:
            conn.starttls(context=ssl.create_default_context())
            conn.ehlo()
        if smtp.user:
            conn.login(smtp.user, smtp.password or "")
    except BaseException:
        conn.close()
        raise
    return conn


def _disconnect(conn: smtplib.SMTP | None) -> None:
    if conn is None:
        return
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()


def _describe(err: BaseException) -> str:
    if isinstance(err, _Wrapped) and err.__cause__ is not None:
        err = err.__cause__
    return f"{type(err).__name__}: {err}"[:2000]


def _claim(rt: Runtime, limit: int) -> tuple[list[_Claimed], datetime]:
    now = rt.clock.now()
    lease = now + CLAIM_LEASE
    with rt.write() as s:
        q = (select(OutboxEmail.id, OutboxEmail.to_addr, OutboxEmail.subject, OutboxEmail.body,
                    OutboxEmail.attempts, OutboxEmail.created_at)
             .where(OutboxEmail.status == "pending", OutboxEmail.next_attempt_at <= now)
             .order_by(OutboxEmail.next_attempt_at, OutboxEmail.id).limit(limit))
        if rt.postgres:
            q = q.with_for_update(skip_locked=True)
        rows = [_Claimed(*r) for r in s.execute(q).all()]
        if rows:
            s.execute(update(OutboxEmail).where(OutboxEmail.id.in_([r.id for r in rows]))
                      .values(next_attempt_at=lease), execution_options={"synchronize_session": False})
    return rows, lease


def _failure_params(row: _Claimed, lease: datetime, error: str, now: datetime) -> dict:
    attempts = row.attempts + 1
    gave_up = attempts >= MAX_ATTEMPTS
    return {"row_id": row.id, "lease": lease, "new_attempts": attempts, "error": error,
            "new_status": "failed" if gave_up else "pending", "retry_at": now if gave_up else now + backoff(attempts)}


def send_due(rt: Runtime, smtp: SmtpSettings, limit: int = 100) -> SendReport:
    """Send up to ``limit`` due mails of the outbox (see the module docstring for the guarantees)."""
    if not smtp.enabled:
        return SendReport(disabled=True)
    rows, lease = _claim(rt, limit)
    if not rows:
        return SendReport()
    started = time.monotonic()
    envelope_from = parseaddr(smtp.mail_from)[1] or smtp.mail_from
    sent = retrying = failed = released = 0
    conn: smtplib.SMTP | None = None
    pending = list(rows)
    try:
        while pending:
            row = pending[0]
            if time.monotonic() - started > CLAIM_LEASE.total_seconds() / 2:
                with rt.write() as s:
                    s.connection().execute(_RELEASE, [{"row_id": r.id, "lease": lease, "now": rt.clock.now()}
                                                      for r in pending])
                released = len(pending)
                pending = []
                break
            try:
                try:
                    msg = build_message(smtp, row, rt.clock.now())
                except (ValueError, TypeError) as err:  # e.g. a line break in a header
                    raise _BadMessage(err) from err
                if conn is None:
                    try:
                        conn = _connect(smtp)
                    except (OSError, smtplib.SMTPException) as err:
                        raise _NoConnection(err) from err
                conn.send_message(msg, envelope_from, [row.to_addr])
            except (_BadMessage, *_MESSAGE_ERRORS) as err:
                params = _failure_params(row, lease, _describe(err), rt.clock.now())
                with rt.write() as s:
                    s.connection().execute(_MARK_FAILED, params)
                failed += params["new_status"] == "failed"
                retrying += params["new_status"] == "pending"
                log.warning("mail %s to %s refused: %s", row.id, row.to_addr, err)
                pending.pop(0)
                continue
            except (_NoConnection, OSError, smtplib.SMTPException) as err:  # the connection: every unsent mail waits
                now = rt.clock.now()
                params = [_failure_params(r, lease, _describe(err), now) for r in pending]
                with rt.write() as s:
                    s.connection().execute(_MARK_FAILED, params)
                failed += sum(p["new_status"] == "failed" for p in params)
                retrying += sum(p["new_status"] == "pending" for p in params)
                log.warning("SMTP %s:%s failed with %d mail(s) unsent: %s", smtp.host, smtp.port, len(pending), err)
                pending = []
                if conn is not None:  # broken: close without QUIT
                    conn.close()
                    conn = None
                break
            with rt.write() as s:
                marked = s.connection().execute(_MARK_SENT, {"row_id": row.id, "lease": lease,
                                                             "now": rt.clock.now()}).rowcount
            if marked != 1:
                log.warning("mail %s was sent but its row had changed meanwhile (lease lost?)", row.id)
            sent += 1
            pending.pop(0)
    finally:
        _disconnect(conn)
    return SendReport(claimed=len(rows), sent=sent, retrying=retrying, failed=failed, released=released)
