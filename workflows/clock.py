"""An injectable clock, so that timers, due dates and audit times can be moved in tests instead of slept.

SpiffWorkflow's timer definitions read ``datetime.now(timezone.utc)`` directly; ``install_clock_hook``
points that module's ``datetime`` name at a subclass whose ``now()`` reads the clock of the current
context. This relies on the module layout of SpiffWorkflow 3.2, which ``pyproject.toml`` pins.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to. Thread-safe."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        with self._lock:
            self._now += delta or timedelta(**kwargs)
            return self._now


_SYSTEM = SystemClock()
_current: contextvars.ContextVar[Clock] = contextvars.ContextVar("lvyue_clock", default=_SYSTEM)


@contextlib.contextmanager
def using_clock(clock: Clock) -> Iterator[Clock]:
    """Make ``clock`` the time source of SpiffWorkflow timers inside the block."""
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)


class _ClockDatetime(datetime):
    @classmethod
    def now(cls, tz=None):  # type: ignore[override]
        value = _current.get().now()
        return value.astimezone(tz) if tz is not None else value.astimezone().replace(tzinfo=None)


_installed = False


def install_clock_hook() -> None:
    global _installed
    if _installed:
        return
    from SpiffWorkflow.bpmn.specs.event_definitions import timer

    timer.datetime = _ClockDatetime
    _installed = True
