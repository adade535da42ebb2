"""Logging: one line per event, context fields, and no secret in any line (S-1, T11)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import string
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiohttp import web

from bots.process.config import Settings
from bots.process.logs import REDACTED, Redactor, log_context

Logged = Callable[..., tuple[Callable[[], str], Any]]
Tokens = tuple[str, str, str]


@pytest.fixture
def tokens(settings: Settings) -> Tokens:
    """(Telegram token, OpenAI key, Discord token), realistic shapes from conftest's settings."""
    assert settings.telegram_token and settings.discord_token
    return settings.telegram_token, settings.openai_api_key, settings.discord_token


INTERACTION_TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OTpBYkNkRWZHaElqS2xNbk9wUXJTdFV2V3g"


def _no_secrets(settings_changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Settings without the tokens, so only the shape-based patterns can catch them."""
    return {"openai_api_key": "", "telegram_token": None, "discord_token": None, **(settings_changes or {})}


def test_library_logger_url_with_telegram_token_is_redacted(logged: Logged, tokens: Tokens) -> None:
    tg_token = tokens[0]
    read, _ = logged(**_no_secrets())
    logging.getLogger("telegram.ext.Updater").error(
        "Exception happened while polling: POST https://api.telegram.org/bot%s/getUpdates failed", tg_token
    )
    logging.getLogger("telegram.ext.Application").warning(
        "download of https://api.telegram.org/file/bot%s/photos/file_7.jpg failed", tg_token
    )
    logging.getLogger("some.lib").info("token in text: %s", tg_token)
    out = read()
    assert tg_token not in out
    assert tg_token.split(":")[1] not in out
    assert "/file/bot" not in out
    assert f"https://api.telegram.org/bot{REDACTED}/getUpdates failed" in out
    assert out.count("\n") == 3  # one line per event


async def test_httpx_request_lines_are_silenced_even_at_debug(logged: Logged, tokens: Tokens) -> None:
    tg_token = tokens[0]
    read, _ = logged(log_level="DEBUG", **_no_secrets())

    async def get_me(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/bot{token}/getMe", get_me)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"http://127.0.0.1:{port}/bot{tg_token}/getMe")
        assert response.status_code == 200
        logging.getLogger("bots.test").debug("debug is on")
    finally:
        await runner.cleanup()
    out = read()
    assert "debug is on" in out  # the root really is at DEBUG
    assert "HTTP Request" not in out and "httpcore" not in out
    assert tg_token not in out


def test_exception_text_and_traceback_are_redacted(logged: Logged, tokens: Tokens) -> None:
    openai_key = tokens[1]
    read, _ = logged(**_no_secrets())

    def call_provider() -> None:
        try:
            raise ConnectionError(f"proxy said: Authorization: Bearer {openai_key}")
        except ConnectionError as inner:
            raise RuntimeError(f"Incorrect API key provided: {openai_key}") from inner

    try:
        call_provider()
    except RuntimeError:
        logging.getLogger("core.images").exception("provider call failed with key %s", openai_key)
    out = read()
    assert openai_key not in out
    assert openai_key[3:] not in out
    assert "Traceback (most recent call last)" in out
    assert f"RuntimeError: Incorrect API key provided: {REDACTED}" in out
    assert "ConnectionError: proxy said: Authorization: Bearer [redacted]" in out


def test_discord_tokens_and_interaction_urls_are_redacted(logged: Logged, tokens: Tokens) -> None:
    dc_token = tokens[2]
    read, _ = logged(**_no_secrets())
    log = logging.getLogger("discord.http")
    log.debug("not shown at INFO %s", dc_token)
    log.warning("headers: %r", {"Authorization": f"Bot {dc_token}", "User-Agent": "DiscordBot"})
    log.warning("token %s leaked", dc_token)
    log.warning("POST https://discord.com/api/v10/interactions/1234567890123/%s/callback 400", INTERACTION_TOKEN)
    log.warning("PATCH /webhooks/998877665544/%s/messages/@original 404", INTERACTION_TOKEN)
    out = read()
    assert dc_token not in out and dc_token.split(".")[0] not in out
    assert INTERACTION_TOKEN not in out
    assert f"/interactions/1234567890123/{REDACTED}/callback" in out
    assert f"/webhooks/998877665544/{REDACTED}/messages/@original" in out
    assert "'User-Agent': 'DiscordBot'" in out
    assert "not shown" not in out


def test_token_fields_in_logged_payloads_are_redacted(logged: Logged) -> None:
    read, _ = logged(**_no_secrets())
    log = logging.getLogger("discord.gateway")
    log.warning("WebSocket Event: %s", {"t": "INTERACTION_CREATE", "d": {"id": "1", "token": INTERACTION_TOKEN}})
    log.warning('raw: {"token":"%s","type":2}', INTERACTION_TOKEN)
    out = read()
    assert INTERACTION_TOKEN not in out
    assert "'token': '[redacted]'" in out and '"token":"[redacted]"' in out and "INTERACTION_CREATE" in out


def test_secrets_given_explicitly_are_redacted_whatever_their_shape(logged: Logged) -> None:
    read, _ = logged(secrets=["123:fake", "hunter2-webhook"], **_no_secrets())
    log = logging.getLogger("bots.telegram.bot")
    log.info("GET http://127.0.0.1:5000/bot123:fake/getMe")
    log.info("encoded: token=123%%3Afake; secret=%s", "hunter2-webhook")
    out = read()
    assert "123:fake" not in out and "123%3Afake" not in out and "hunter2-webhook" not in out
    assert out.count(REDACTED) == 3


def test_settings_secrets_are_redacted_too(logged: Logged) -> None:
    read, _ = logged(telegram_webhook_secret="s3cr3t_webhook_value")
    logging.getLogger("x").warning("secret header %s", "s3cr3t_webhook_value")
    assert "s3cr3t_webhook_value" not in read()


def test_args_are_formatted_before_redaction_and_bad_args_do_not_leak(logged: Logged, tokens: Tokens) -> None:
    tg_token = tokens[0]
    read, _ = logged(**_no_secrets())
    log = logging.getLogger("bots.process.web")
    log.info("calling %s with %r", "getMe", {"token": tg_token})
    log.info("two placeholders %s %s but one arg", tg_token)  # noqa: PLE1206 - on purpose
    out = read()
    assert tg_token not in out
    assert "calling getMe with {'token': '[redacted]'}" in out
    assert "unformattable log message" in out


def test_handlers_already_on_the_root_are_covered(
    logged: Logged, caplog: pytest.LogCaptureFixture, tokens: Tokens
) -> None:
    tg_token = tokens[0]
    caplog.set_level(logging.INFO)
    logged(**_no_secrets())
    logging.getLogger("httpx2").warning("GET https://api.telegram.org/bot%s/getFile", tg_token)
    assert caplog.records
    assert tg_token not in caplog.text
    assert f"/bot{REDACTED}/getFile" in caplog.records[-1].getMessage()


def test_plain_text_is_left_alone() -> None:
    redact = Redactor(["a-real-secret"])
    lines = [
        "round 42 delivered in 1.25 s by discord.ext.commands.bot",
        "GET https://cdn.discordapp.com/attachments/1234/5678/image.png?ex=6612&is=65ff&hm=abc 200",
        "task-queue depth 3; asking for sk- prefixed nothing",
        "2025-01-02T03:04:05.678Z telegram chat -1001234567890 migrated",
        "POST https://api.openai.com/v1/responses 200 req_0123456789abcdef",
    ]
    for line in lines:
        assert redact(line) == line


def test_json_lines_parse_and_are_redacted(logged: Logged, tokens: Tokens) -> None:
    tg_token, openai_key, _ = tokens
    read, _ = logged(log_format="json", **_no_secrets())
    log = logging.getLogger("core.studio")
    with log_context(platform="discord", community="42", round_id=7, request_id="req_9", level="spoof"):
        log.info("round delivered")
        try:
            raise ValueError(f"bad key {openai_key}")
        except ValueError:
            log.exception("failed")
    log.info("outside with token %s", tg_token)
    entries = [json.loads(line) for line in read().splitlines()]
    assert len(entries) == 3
    first, second, third = entries
    assert first["message"] == "round delivered" and first["level"] == "INFO"
    assert first["logger"] == "core.studio" and first["time"].endswith("Z")
    assert (first["platform"], first["community"], first["round_id"], first["request_id"]) == (
        "discord", "42", 7, "req_9",
    )
    assert "ValueError: bad key [redacted]" in second["exc"] and openai_key not in second["exc"]
    assert "round_id" not in third and third["message"] == f"outside with token {REDACTED}"


def test_context_fields_in_text_lines(logged: Logged) -> None:
    read, _ = logged()
    log = logging.getLogger("core.studio")
    with log_context(platform="telegram", community="-100123"):
        with log_context(round_id=42, request_id="req_abc", community=None):
            log.info("provider answered")
        log.info("between rounds")
    log.info("no context")
    lines = read().splitlines()
    assert lines[0].endswith(
        "INFO core.studio: provider answered [platform=telegram community=-100123 round_id=42 request_id=req_abc]"
    )
    assert lines[1].endswith("between rounds [platform=telegram community=-100123]")
    assert lines[2].endswith("INFO core.studio: no context")


async def test_context_follows_tasks_without_bleeding(logged: Logged) -> None:
    read, _ = logged()
    log = logging.getLogger("core.studio")
    started = asyncio.Event()
    release = asyncio.Event()

    async def round_(number: int) -> None:
        with log_context(round_id=number):
            if number == 1:
                started.set()
                await release.wait()
            log.info("delivered %d", number)

    first = asyncio.create_task(round_(1))
    await started.wait()
    await round_(2)
    release.set()
    await first
    lines = read().splitlines()
    assert lines[0].endswith("delivered 2 [round_id=2]")
    assert lines[1].endswith("delivered 1 [round_id=1]")


def test_level_and_repeated_setup(logged: Logged) -> None:
    logged()
    read, _ = logged(log_level="WARNING")  # a second call replaces the handler, never duplicates it
    logging.getLogger("a").info("hidden")
    logging.getLogger("a").warning("shown")
    assert read().count("shown") == 1
    assert "hidden" not in read()
    assert sum(type(h).__name__ == "_EaselHandler" for h in logging.getLogger().handlers) == 1


def test_uncaught_exceptions_go_through_the_filters(logged: Logged, tokens: Tokens) -> None:
    read, _ = logged(**_no_secrets())
    url = f"https://api.telegram.org/bot{tokens[0]}/getMe"
    try:
        raise RuntimeError(f"Client error '401 Unauthorized' for url '{url}'")
    except RuntimeError as error:
        sys.excepthook(type(error), error, error.__traceback__)
    out = read()
    assert "CRITICAL easel: uncaught exception, exiting" in out
    assert tokens[0] not in out and "RuntimeError: Client error '401 Unauthorized'" in out


@pytest.mark.parametrize(
    "alphabet",
    [
        string.ascii_letters,
        string.ascii_letters + string.digits + "-_",  # base64url
        string.digits,
        string.ascii_letters + ".",
    ],
    ids=["letters", "base64url", "digits", "dotted"],
)
def test_redaction_stays_linear_on_long_runs(alphabet: str) -> None:
    """A debug line may hold a base64 blob: a backtracking pattern would take minutes on it."""
    rng = random.Random(7)
    blob = "".join(rng.choice(alphabet) for _ in range(200_000))
    urls = ",".join(f"https://example.com/p/{i}" for i in range(5_000))
    started = time.perf_counter()
    Redactor(["some-secret"])(blob)
    Redactor([])(urls)
    assert time.perf_counter() - started < 2.0  # linear: ~0.05 s; quadratic: minutes


def test_a_prompt_cannot_forge_log_lines(logged: Logged) -> None:
    read, _ = logged()
    prompt = "a cat\n2025-01-01T00:00:00.000Z ERROR core.studio: forged"
    with log_context(round_id=3, level="x"):
        logging.getLogger("core.studio").info("prompt: %s", prompt)
    lines = read().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("prompt: a cat\\n2025-01-01T00:00:00.000Z ERROR core.studio: forged [round_id=3 level=x]")


def test_credentials_inside_urls_never_reach_the_logs(logged: Logged) -> None:
    base = "https://proxy-user:Pr0xy-Passw0rd@proxy.example/v1?api-key=Query-Key-123&api-version=2024-01"
    database = "postgresql://easel:Db-Passw0rd@db.internal:5432/easel"
    read, configured = logged(openai_base_url=base, database_url=database)
    assert {"Pr0xy-Passw0rd", "Query-Key-123", "Db-Passw0rd"} <= set(configured.secrets())
    logging.getLogger("openai").error("request to %s failed", base.replace("proxy-user", "other-user"))
    logging.getLogger("easel").info("store at %s", database)
    # Not told about these ones: caught by their shape in a URL.
    logging.getLogger("httpx").error("GET https://u:unknown-pass@elsewhere.example/x?key=unknown-key&page=2 failed")
    out = read()
    for secret in ("Pr0xy-Passw0rd", "Query-Key-123", "Db-Passw0rd", "unknown-pass", "unknown-key", "easel:Db"):
        assert secret not in out, secret
    assert "api-version=2024-01" in out and "page=2" in out and "proxy.example/v1" in out
