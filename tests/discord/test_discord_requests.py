"""REST requests per round on Discord (issue 16's audit), counted at the fake server through the real discord.py.

A round that did not wait: the acknowledgement (defer, or typing for a message), one progress edit that shows
the stage and the Cancel button, and the result edited into that same message: 3. A slash command's round
that waited less than `QUEUE_GRACE` (2 s) for a provider slot: the same 3 (the deferred "thinking…" covers the
wait). One that waited longer: one more (the queue position), however many positions it passed in under 10 s;
after that a new position only when it moved meaningfully (into the last three places, or by a quarter), at
most every 10 s. A message round shows its first position at once (it makes the status message): 4.

Before this audit: 2 for a round that did not wait, but its "thinking" message never showed the stage or the
Cancel button; 4 for one that waited, with a queue edit every 2.5 s while it waited and, for message rounds,
a typing call every 8 s while it ran."""

from __future__ import annotations

import asyncio

import pytest

from bots.discord.bot import DiscordBot
from bots.discord.views import InteractionRoundView
from core.events import RoundRequest
from core.outcomes import Button, Refusal, RoundInfo, RoundView, Stage
from tests.discord.discord_support import World, buttons
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.fake_services import FakeServices

NOT_REST = ("GATEWAY", "cdn", "get_user", "application_info", "get_global_commands", "bulk_upsert_global_commands")


def rest_calls(fake: FakeDiscord, since: int) -> list[str]:
    return [c.method for c in fake.calls[since:] if not c.method.startswith(NOT_REST)]


@pytest.mark.parametrize(
    ("positions", "expected"),
    [
        ([], ["interaction_callback", "edit_original", "edit_original"]),
        # queued, then a slot within the grace: no queue edit
        ([4, 3, 2, 1], ["interaction_callback", "edit_original", "edit_original"]),
    ],
)
async def test_requests_per_interaction_round(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices, positions: list[int], expected: list[str]
) -> None:
    services.positions = positions
    services.stages = [Stage.THINKING, Stage.DRAWING, Stage.SENDING]  # within 10 s: no edits of their own
    before = len(fake.calls)
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished()
    assert rest_calls(fake, before) == expected
    result = fake.original(interaction)
    assert result is not None and buttons(result) == [("Reroll", "easel:reroll:1")]  # the progress became it


@pytest.mark.parametrize(
    ("positions", "expected"),
    [
        ([], ["send_typing", "send_message", "edit_message"]),
        ([4, 3, 2, 1], ["send_typing", "send_message", "edit_message", "edit_message"]),
    ],
)
async def test_requests_per_message_round(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices, positions: list[int], expected: list[str]
) -> None:
    services.positions = positions
    services.stages = [Stage.THINKING, Stage.DRAWING, Stage.SENDING]
    before = len(fake.calls)
    await fake.user_message(world.guild.channel, world.alice, "a fox", mention_bot=True)
    await services.wait_finished()
    assert rest_calls(fake, before) == expected


# ---- a slash command's round that waits for a provider slot ----------------------------------------------------


def waiting_round(
    services: FakeServices, script: list[tuple[int, float]], *, grace: float = 0.05, interval: float = 10.0
) -> list[InteractionRoundView]:
    """Each round reports the queue positions in `script` ((position, seconds until the next)), with the view's
    grace and queue interval shortened to test time, then runs and is delivered as scripted."""
    views: list[InteractionRoundView] = []

    async def submit(request: RoundRequest, view: RoundView) -> None:
        assert isinstance(view, InteractionRoundView)
        views.append(view)
        view.queue_grace, view.pace.queue_interval = grace, interval
        await view.begin(RoundInfo(1, 1, "en", Button("Cancel", "cancel:1")))
        for position, wait in script:
            await view.queued(position)
            await asyncio.sleep(wait)
        await services.play(request, view)  # started, stages, the result

    services.on_submit = submit
    return views


def edits_of(fake: FakeDiscord, token: str) -> list[str]:
    return [
        str(c.params.get("content") or "")
        for c in fake.calls_to("edit_original")
        if c.params["_path"].get("token") == token
    ]


async def test_a_round_that_waited_past_the_grace_costs_four_requests(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    # Waits 0.3 s (the grace shortened to 0.05 s), passing five positions: one queue edit, the position at the
    # end of the grace.
    waiting_round(services, [(6, 0.01), (5, 0.01), (4, 0.25), (3, 0.01), (2, 0.01)])
    services.stages = [Stage.THINKING, Stage.DRAWING, Stage.SENDING]
    before = len(fake.calls)
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished()

    assert rest_calls(fake, before) == ["interaction_callback", "edit_original", "edit_original", "edit_original"]
    assert len(fake.calls_to("interaction_callback")) == 1
    contents = edits_of(fake, interaction.token)
    assert contents[0] == "Queued: 3 requests ahead of you."
    assert contents[1].startswith("Thinking… <t:") and contents[2] == "#1 · 9 credits left today"
    result = fake.original(interaction)
    assert result is not None and buttons(result) == [("Reroll", "easel:reroll:1")]


async def test_a_long_wait_edits_only_meaningful_moves_at_the_queue_pace(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    # The 10 s pace shortened to 0.15 s: 41 -> 40 is no news, 40 -> 30 is (a quarter), 30 -> 29 is not,
    # 29 -> 3 is (the last three places), 3 -> 2 is too but comes within the pace; then the slot.
    waiting_round(services, [(41, 0.2), (40, 0.2), (30, 0.2), (29, 0.2), (3, 0.01), (2, 0.2)], interval=0.15)
    before = len(fake.calls)
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished()

    contents = edits_of(fake, interaction.token)
    assert contents[:3] == [
        "Queued: 40 requests ahead of you.",
        "Queued: 29 requests ahead of you.",
        "Queued: 2 requests ahead of you.",
    ]
    assert contents[3].startswith("Thinking… <t:") and len(contents) == 5
    assert len(rest_calls(fake, before)) == 6


async def test_a_round_refused_in_its_grace_never_shows_a_position(
    fake: FakeDiscord, world: World, bot: DiscordBot, services: FakeServices
) -> None:
    services.refusal = Refusal("The image provider's safety system declined that prompt.", "safety", ephemeral=False)
    waiting_round(services, [(3, 0.01)], grace=0.2)
    before = len(fake.calls)
    interaction = await fake.slash_command(world.guild.channel, world.alice, "imagine", {"prompt": "a fox"})
    await services.wait_finished()
    await asyncio.sleep(0.4)  # past the grace: the cancelled position edit must not come

    contents = edits_of(fake, interaction.token)
    assert not any(c.startswith("Queued") for c in contents)
    assert contents[-1].startswith("The image provider's safety system")
    assert rest_calls(fake, before) == ["interaction_callback", "edit_original", "edit_original"]
