"""Secrets at their most exposed: Telegram file URLs (they hold the bot token) during a photo edit, and
Discord interaction tokens, with production logging at DEBUG. The fault and redelivery runs scan too; these
are the focused cases."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from tests.fakes.fake_provider import FakeProvider
from tests.reliability.conftest import (
    DISCORD_TOKEN,
    FILE_URL_MARK,
    OPENAI_KEY,
    TELEGRAM_TOKEN,
    scan_for_secrets,
    settle,
    wait_until,
    write_summary,
)
from tests.reliability.stacks import discord_stack, telegram_stack

SECRETS = [TELEGRAM_TOKEN, DISCORD_TOKEN, OPENAI_KEY, FILE_URL_MARK]


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(out, format="JPEG")
    return out.getvalue()


async def test_telegram_photo_edit_keeps_file_urls_and_token_out_of_logs_db_and_messages(
    tmp_path: Path, debug_logs: Any
) -> None:
    logs = debug_logs()
    async with telegram_stack(tmp_path / "data", provider=FakeProvider()) as s:
        tg = s.tg
        ann = tg.user("Ann", "ann")
        chat = tg.private_chat(ann)
        await tg.send_message(chat, ann, "/imagine make it blue", photo=_jpeg())
        await tg.send_message(chat, ann, "/imagine make it green", document=(_jpeg(), "image/jpeg", "x.jpg"))
        await wait_until(tg, lambda: len(tg.calls_to("sendPhoto")) + len(tg.calls_to("sendMessage")) >= 2,
                         what="two answers")
        assert len(tg.calls_to("sendPhoto")) == 2, [c.params.get("text") for c in tg.calls_to("sendMessage")]
        await settle(s.tasks)
        assert len(tg.downloads) == 2  # both photos were fetched through getFile + the file URL
        secrets = scan_for_secrets(secrets=SECRETS, logs=logs, db=s.settings.db_path, fakes=[tg])
    write_summary("secrets-telegram-files", downloads=2, secrets=secrets)
    assert secrets["hits"] == {}, secrets


async def test_discord_interaction_tokens_stay_out_of_debug_logs(tmp_path: Path, debug_logs: Any) -> None:
    logs = debug_logs()
    async with discord_stack(tmp_path / "data", provider=FakeProvider()) as s:
        fake = s.fake
        guild = await fake.guild("Painters")
        member = fake.member(guild, "alice")
        interaction = await fake.slash_command(guild.channel, member, "imagine", {"prompt": "a fox"})
        def answered() -> bool:
            original = fake.original(interaction)
            return bool(original and original["attachments"] and original["content"].startswith("#"))

        await fake.wait_until(answered)
        await settle(s.tasks)
        secrets = scan_for_secrets(secrets=[*SECRETS, interaction.token], logs=logs, db=s.settings.db_path,
                                   fakes=[fake])
    write_summary("secrets-discord-interaction-tokens", secrets=secrets)
    assert secrets["hits"] == {}, secrets
