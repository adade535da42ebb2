"""Helpers for the Telegram adapter tests: the shared FakeServices (tests/fakes/fake_services.py) and an
ERROR-log collector."""

from __future__ import annotations

import logging

from tests.fakes.fake_services import FakeServices, Press

__all__ = ["ErrorLog", "FakeServices", "Press"]


class ErrorLog(logging.Handler):
    """Collects ERROR records; the fixture fails a test that logged one it did not expect."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[logging.LogRecord]:
        taken, self.records = self.records, []
        return taken
