"""REST requests per round on Discord (issue 16's audit), counted at the fake server through the real discord.py.

A round that did not wait: the acknowledgement (defer, or typing for a message), one progress edit that shows
the stage and the Cancel button, and the result edited into that same message: 3. A round that waited: one more
(the queue position), however many positions or stages it passed in under 10 s.

Before this audit: 2 for a round that did not wait, but its "thinking" message never showed the stage or the
Cancel button; 4 for one that waited, with a queue edit every 2.5 s while it waited and, for message rounds,
a typing call every 8 s while it ran."""

from __future__ import annotations

import pytest

from bots.discord.bot import DiscordBot
from core.outcomes import Stage
from tests.discord.discord_support import World, buttons
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_services import FakeServices

NOT_REST = ("GATEWAY", "cdn", "get_user", "application_info", "get_global_commands", "bulk_upsert_global_commands")


def rest_calls(fake: FakeDiscord, since: int) -> list[str]:
    return [c.method for c in fake.calls[since:] if not c.method.startswith(NOT_REST)]


@pytest.mark.parametrize(("positions", "expected"), [
    ([], ["interaction_callback", "edit_original", "edit_original"]),
    ([4, 3, 2, 1], ["interaction_callback", "edit_original", "edit_original", "edit_original"]),
])
async def test_requests_per_interaction_round(fake: FakeDiscord, world: World, bot: DiscordBot,
                                              services: FakeServices, positions: list[int],
                                              expected: list[str]) -> None:
    services.positions = positions
    services.stages = [Stage.THINKING, Stage.DRAWING, Stage.SENDING]  # within 10 s: no edits of their own
    before = len(fake.calls)
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished()
    assert rest_calls(fake, before) == expected
    result = fake.original(interaction)
    assert result is not None and buttons(result) == [("Reroll", "easel:reroll:1")]  # the progress became it


@pytest.mark.parametrize(("positions", "expected"), [
    ([], ["send_typing", "send_message", "edit_message"]),
    ([4, 3, 2, 1], ["send_typing", "send_message", "edit_message", "edit_message"]),
])
async def test_requests_per_message_round(fake: FakeDiscord, world: World, bot: DiscordBot,
                                          services: FakeServices, positions: list[int],
                                          expected: list[str]) -> None:
    services.positions = positions
    services.stages = [Stage.THINKING, Stage.DRAWING, Stage.SENDING]
    before = len(fake.calls)
    await fake.user_message(world.guild.channel, world.alice, "a fox", mention_bot=True)
    await services.wait_finished()
    assert rest_calls(fake, before) == expected
