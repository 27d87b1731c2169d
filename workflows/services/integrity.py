"""Proves the audit record was not changed: walks the hash chains, checks them against their heads and
the anchors, and writes new anchors.

A break names the chain, the event's place in it and what no longer fits: an event whose content does not
match its hash (altered), a gap in the sequence or a head ahead of the last event (removed), an event that
does not link to the one before it or sits out of id order (reordered), or an anchor that disagrees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from operator import attrgetter

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from models import AuditAnchor, AuditAnchorEntry, AuditChain, AuditEvent, Instance

from ..runtime import Runtime
from .audit import GENESIS, chain_of, event_hash, utc_text
from .errors import NotFound

_EVENT_COLUMNS = (AuditEvent.id, AuditEvent.chain, AuditEvent.seq, AuditEvent.prev_hash, AuditEvent.hash,
                  AuditEvent.at, AuditEvent.action, AuditEvent.actor_id, AuditEvent.actor, AuditEvent.role,
                  AuditEvent.instance_id, AuditEvent.deployment_id, AuditEvent.task_id, AuditEvent.spec_id,
                  AuditEvent.data)


@dataclass(frozen=True)
class Break:
    chain: str
    seq: int | None
    event_id: int | None
    kind: str  # altered | removed | reordered | head | anchor
    message: str

    def __str__(self) -> str:
        return f"{self.chain}: {self.message}"


@dataclass
class VerifyReport:
    chains: int = 0
    events: int = 0
    anchors: int = 0
    breaks: list[Break] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    def summary(self) -> str:
        if self.ok:
            return f"intact: {self.events} event(s) in {self.chains} chain(s), {self.anchors} anchor(s) checked"
        return f"{len(self.breaks)} break(s) in {self.events} event(s): " + "; ".join(map(str, self.breaks[:5]))


@dataclass(frozen=True)
class Head:
    seq: int
    head: str


def _walk(chain: str, rows: Iterable, head: Head | None, anchored: dict[int, str], report: VerifyReport) -> None:
    """Checks one chain's events (in seq order) against each other, the chain head and anchor entries."""
    expected, prev_hash, prev_id = 1, GENESIS, 0
    breaks = report.breaks
    report.chains += 1
    for r in rows:
        report.events += 1
        where = f"event #{r.seq} (id {r.id}, {r.action} by {r.actor} at {r.at:%Y-%m-%d %H:%M:%S})"
        if r.seq > expected:
            missing = f"#{expected}" if r.seq == expected + 1 else f"#{expected}–#{r.seq - 1}"
            breaks.append(Break(chain, expected, None, "removed", f"event {missing} is missing before {where}"))
        elif r.id < prev_id:
            breaks.append(Break(chain, r.seq, r.id, "reordered", f"{where} is out of order: it was written before "
                                                                 "the event it follows"))
        elif r.prev_hash != prev_hash:
            breaks.append(Break(chain, r.seq, r.id, "reordered", f"{where} does not link to the event before it"))
        if event_hash(r) != r.hash:
            breaks.append(Break(chain, r.seq, r.id, "altered", f"{where} was altered: its content does not match "
                                                               "its hash"))
        elif r.seq in anchored and anchored[r.seq] != r.hash:
            breaks.append(Break(chain, r.seq, r.id, "anchor", f"{where} differs from the anchored record"))
        expected, prev_hash, prev_id = r.seq + 1, r.hash, r.id
    last = expected - 1
    if head is None:
        if last:
            breaks.append(Break(chain, None, None, "head", "the chain has events but no head row"))
    elif head.seq > last:
        breaks.append(Break(chain, last + 1, None, "removed",
                            f"the chain head counts {head.seq} event(s) but only {last} remain: "
                            f"event #{last + 1} onwards was removed"))
    elif head.seq < last or head.head != prev_hash:
        breaks.append(Break(chain, last, None, "head", "the chain head does not match its last event"))
    beyond = [seq for seq in anchored if seq > last]
    if beyond and not (head is not None and head.seq > last):
        breaks.append(Break(chain, min(beyond), None, "removed",
                            f"an anchor recorded event #{min(beyond)}, which is gone"))


def _anchored_in(s, chains: list[str] | None) -> dict[str, dict[int, str]]:
    q = select(AuditAnchorEntry.chain, AuditAnchorEntry.seq, AuditAnchorEntry.hash)
    if chains is not None:
        q = q.where(AuditAnchorEntry.chain.in_(chains))
    out: dict[str, dict[int, str]] = {}
    for chain, seq, h in s.execute(q):
        out.setdefault(chain, {})[seq] = h
    return out


def verify_instance(rt: Runtime, business_key: str) -> VerifyReport:
    with rt.snapshot() as s:
        instance_id = s.scalar(select(Instance.id).where(Instance.business_key == business_key))
        if instance_id is None:
            raise NotFound(f"no contract '{business_key}'")
        return verify_chain_in(s, chain_of(instance_id))


def verify_chain_in(s, chain: str) -> VerifyReport:
    """One chain, read in ``s`` (give it a snapshot: a head read before a commit and events after it would
    not agree)."""
    report = VerifyReport()
    row = s.execute(select(AuditChain.seq, AuditChain.head).where(AuditChain.chain == chain)).first()
    rows = s.execute(select(*_EVENT_COLUMNS).where(AuditEvent.chain == chain).order_by(AuditEvent.seq))
    _walk(chain, rows, Head(*row) if row else None, _anchored_in(s, [chain]).get(chain, {}), report)
    if report.events == 0 and chain.startswith("i:") and not report.breaks:
        report.breaks.append(Break(chain, 1, None, "removed", "the contract has no recorded history: every contract "
                                                              "starts with a recorded event"))
    return report


def verify_all(rt: Runtime, progress: Callable[[int], None] | None = None,
               digest: str | None = None) -> VerifyReport:
    """Every chain and every anchor, streaming the events in chain order: each chain is checked as its rows
    go by, so memory does not grow with the length of a chain (the ``access`` chain never stops growing).
    ``digest``: an anchor digest kept outside the database, which must still be in the anchor chain."""
    report = VerifyReport()
    with rt.snapshot() as s:
        heads = {c: Head(seq, h) for c, seq, h in s.execute(select(AuditChain.chain, AuditChain.seq,
                                                                    AuditChain.head))}
        anchored = _anchored_in(s, None)
        _verify_anchors(s, report, digest)
        stream = s.execute(select(*_EVENT_COLUMNS).order_by(AuditEvent.chain, AuditEvent.seq)
                           .execution_options(yield_per=2000))
        seen = set()
        for chain, rows in groupby(stream, key=attrgetter("chain")):
            before = report.events
            _walk(chain, rows, heads.pop(chain, None), anchored.get(chain, {}), report)
            seen.add(chain)
            if progress:
                progress(report.events - before)
        # chains whose every event is gone: a head or an anchor still counts them, or their contract exists
        for chain in sorted((set(heads) | set(anchored)) - seen):
            _walk(chain, [], heads.get(chain), anchored.get(chain, {}), report)
            seen.add(chain)
        for instance_id, key in s.execute(select(Instance.id, Instance.business_key)):
            if chain_of(instance_id) not in seen:
                report.breaks.append(Break(chain_of(instance_id), 1, None, "removed",
                                           f"contract {key} has no recorded history: every event of it was removed"))
    return report


def count_events(rt: Runtime) -> int:
    with rt.read() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent)) or 0


# --- anchors -------------------------------------------------------------------------------------------

def anchor_digest(prev_digest: str, at: datetime, entries: Iterable[tuple[str, int, str]]) -> str:
    h = hashlib.sha256(f"{prev_digest}\n{utc_text(at)}\n".encode())
    for chain, seq, head in sorted(entries):
        h.update(f"{chain}:{seq}:{head}\n".encode())
    return h.hexdigest()


def _verify_anchors(s, report: VerifyReport, digest: str | None = None) -> None:
    prev = GENESIS
    anchors = s.execute(select(AuditAnchor.id, AuditAnchor.at, AuditAnchor.prev_digest, AuditAnchor.digest)
                        .order_by(AuditAnchor.id)).all()
    entries: dict[int, list[tuple[str, int, str]]] = {}
    for anchor_id, chain, seq, h in s.execute(select(AuditAnchorEntry.anchor_id, AuditAnchorEntry.chain,
                                                     AuditAnchorEntry.seq, AuditAnchorEntry.hash)):
        entries.setdefault(anchor_id, []).append((chain, seq, h))
    for a in anchors:
        report.anchors += 1
        if a.prev_digest != prev:
            report.breaks.append(Break("anchors", a.id, None, "anchor",
                                       f"anchor #{a.id} does not follow the anchor before it"))
        elif anchor_digest(a.prev_digest, a.at, entries.get(a.id, [])) != a.digest:
            report.breaks.append(Break("anchors", a.id, None, "anchor",
                                       f"anchor #{a.id} of {a.at:%Y-%m-%d %H:%M} was altered: its entries do not "
                                       "match its digest"))
        prev = a.digest
    if digest and digest.strip().lower() not in {a.digest for a in anchors}:
        report.breaks.append(Break("anchors", None, None, "anchor",
                                   f"the digest kept outside ({digest.strip()[:16]}…) is in no anchor: the anchors "
                                   "were rewritten or removed"))


@dataclass(frozen=True)
class AnchorInfo:
    id: int
    at: datetime
    chains: int
    digest: str


def anchor(rt: Runtime) -> AnchorInfo | None:
    """Fix the heads of every chain that moved since the last anchor; None when nothing moved, or when
    another worker anchored at the same moment (each anchor's ``prev_digest`` is unique)."""
    try:
        return _anchor(rt)
    except IntegrityError:
        return None


def _anchor(rt: Runtime) -> AnchorInfo | None:
    now = rt.clock.now()
    with rt.write() as s:
        moved = s.execute(select(AuditChain.chain, AuditChain.seq, AuditChain.head)
                          .where(AuditChain.seq > AuditChain.anchored_seq).order_by(AuditChain.chain)).all()
        if not moved:
            return None
        prev = s.scalar(select(AuditAnchor.digest).order_by(AuditAnchor.id.desc()).limit(1)) or GENESIS
        entries = [tuple(r) for r in moved]
        digest = anchor_digest(prev, now, entries)
        anchor_id = s.scalar(insert(AuditAnchor).returning(AuditAnchor.id).values(
            at=now, chains=len(entries), prev_digest=prev, digest=digest))
        s.execute(insert(AuditAnchorEntry), [{"anchor_id": anchor_id, "chain": c, "seq": seq, "hash": h}
                                             for c, seq, h in entries])
        s.connection().execute(update(AuditChain).where(AuditChain.chain == bindparam("c"))
                               .values(anchored_seq=bindparam("s")), [{"c": c, "s": seq} for c, seq, _ in entries])
    return AnchorInfo(anchor_id, now, len(entries), digest)


def latest_anchor(rt: Runtime) -> AnchorInfo | None:
    with rt.read() as s:
        row = s.execute(select(AuditAnchor.id, AuditAnchor.at, AuditAnchor.chains, AuditAnchor.digest)
                        .order_by(AuditAnchor.id.desc()).limit(1)).first()
    return AnchorInfo(*row) if row else None


def anchor_if_due(rt: Runtime, every: timedelta) -> AnchorInfo | None:
    last = latest_anchor(rt)
    if last is not None and rt.clock.now() - last.at < every:
        return None
    return anchor(rt)
