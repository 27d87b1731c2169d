"""The runtime every service works with: database sessions, the clock, and two caches.

Deployments are immutable, so their parsed packages are cached by id. Live workflows are cached by
instance id *and* version: a service takes the workflow out of the cache (so no two threads share one),
and puts it back only after its transaction committed, tagged with the new version. Any other process
that changed the instance bumped the version, so a stale cached copy is never used.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from .clock import Clock, SystemClock, install_clock_hook
from .db import is_postgres, make_engine
from .engine.codec import StateCodec


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def pop(self, key: Any) -> Any:
        with self._lock:
            return self._items.pop(key, None)

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class Runtime:
    def __init__(self, database_url: str, clock: Clock | None = None, cache_size: int = 512,
                 business_tz: str = "Asia/Shanghai", password_method: str = "scrypt") -> None:
        install_clock_hook()
        self.database_url = database_url
        self.engine = make_engine(database_url)
        self.postgres = is_postgres(self.engine)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(lvyue_write=True), expire_on_commit=False)
        self.clock: Clock = clock or SystemClock()
        self.business_tz = business_tz
        self.password_method = password_method  # tests use a cheap hash; production keeps scrypt
        self.codec = StateCodec()
        self.packages = _LRU(64)
        self.workflows = _LRU(cache_size)
        self.script_engines: dict[int, Any] = {}

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read transaction that sees one moment throughout (REPEATABLE READ on PostgreSQL; a SQLite read
        transaction already does): for reads that must agree with each other, like verifying the audit."""
        with self._read() as session:
            if self.postgres:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        with self._write() as session, session.begin():
            yield session

    def take_workflow(self, instance_id: int, version: int) -> Any:
        cached = self.workflows.pop(instance_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        return None

    def keep_workflow(self, instance_id: int, version: int, workflow: Any) -> None:
        self.workflows.put(instance_id, (version, workflow))

    def dispose(self) -> None:
        self.engine.dispose()
