"""Fixtures for the operations tests: settings, and a root logger restored after every test."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bots.process.config import Settings
from bots.process.logs import QUIET_LOGGERS

# Realistic shapes, made up.
TELEGRAM_TOKEN = "7312450983:AAHk2Zb9xQ-3mLpR7vT_wYc4dNe8fGh1jKs"
OPENAI_KEY = "sk-proj-Zx81QmWq7Rt2Yv5Bn0Kc3Lp9Hs6Dg4Fa"
DISCORD_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.GhT6pQ.x8Kd2Lm5Nq7Rs9Tu1Vw3Xy5Za7Bc9De1Fg"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        openai_api_key=OPENAI_KEY,
        telegram_token=TELEGRAM_TOKEN,
        discord_token=DISCORD_TOKEN,
        data_dir=tmp_path / "data",
        http_host="127.0.0.1",
        http_port=0,
    )


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`setup_logging` changes process-wide state; put it back so other tests see pytest's logging."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    filters = {h: list(h.filters) for h in handlers}
    level = root.level
    quiet = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    excepthook = sys.excepthook
    yield
    sys.excepthook = excepthook
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler, old in filters.items():
        handler.filters[:] = old
    root.setLevel(level)
    for name, lvl in quiet.items():
        logging.getLogger(name).setLevel(lvl)


@pytest.fixture
def logged(
    settings: Settings, restore_logging: None
) -> Callable[..., tuple[Callable[[], str], Settings]]:
    """`read, settings = logged(log_format="json", secrets=[...])`: set up logging into a buffer."""
    from bots.process.logs import setup_logging

    def make(secrets: list[str] | None = None, **changes: Any) -> tuple[Callable[[], str], Settings]:
        configured = replace(settings, **changes)
        buffer = io.StringIO()
        setup_logging(configured, secrets or [], stream=buffer)
        return buffer.getvalue, configured

    return make
