"""The console adapter over the real core: generate, reply N, reroll, edit a file, quota verbs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from bots.console import Console
from bots.process.app import Core
from tests.fakes.fake_provider import FakeProvider, png


async def lines(items: Iterable[str]) -> AsyncIterator[str]:
    for item in items:
        yield item


async def talk(core: Core, tmp_path: Path, *commands: str) -> list[str]:
    out: list[str] = []
    await Console(core.services, tmp_path / "out", out.append).run(lines(commands))
    return out


async def test_generate_then_reply_and_branch(core: Core, provider: FakeProvider, tmp_path: Path) -> None:
    out = await talk(core, tmp_path, "a red fox", "reply 1 make it blue", "reply 1 make it green", "quit")
    saved = [line for line in out if "saved:" in line]
    assert len(saved) == 3
    for line in saved:
        path = Path(line.split("saved: ")[1].split("\n")[0])
        assert path.read_bytes().startswith(b"\x89PNG")
    assert provider.jobs[1].parent is not None and provider.jobs[1].parent.response_id == "resp_1"
    assert provider.jobs[2].parent is not None and provider.jobs[2].parent.response_id == "resp_1"
    assert any("#3 (from #1)" in line for line in out)


async def test_reroll_and_edit_file(core: Core, provider: FakeProvider, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(png(40, 30))
    out = await talk(core, tmp_path, "a fox --quality low", "reroll 1", f"edit {photo} add a hat", "reroll 9")
    assert [job.prompt for job in provider.jobs] == ["a fox", "a fox", "add a hat"]
    assert provider.jobs[0].params["quality"] == "low" and provider.jobs[1].params["quality"] == "low"
    assert provider.jobs[2].inputs and provider.jobs[2].inputs[0].startswith(b"\x89PNG")
    assert any("no round 9" in line for line in out)


async def test_quota_verbs_and_moderation(core: Core, provider: FakeProvider, tmp_path: Path) -> None:
    out = await talk(
        core,
        tmp_path,
        "as bob",
        "a cat",
        "quota",
        "quota set 1 bob",  # bob is not a moderator
        "as you",
        "quota set 1 bob",
        "quota bob",
        "quota grant 2 bob",
        "quota ban bob",
        "as bob",
        "a dog",
        "quota",
        "usage",
    )
    text = "\n".join(out)
    assert "9 credits left today" in text  # bob after his first image
    assert "Only moderators" in text
    assert "bob has 0 credits left today" in text  # new allowance 1 minus 1 used
    assert "bob has 2 credits left today" in text  # after the grant
    assert "blocked you" in text
    assert len(provider.jobs) == 1
    assert "Your usage here" in text


async def test_bad_options_and_empty_prompt(core: Core, provider: FakeProvider, tmp_path: Path) -> None:
    out = await talk(core, tmp_path, "a fox --size huge", "reply 1    ")
    assert any("--size can't be “huge”" in line and "Nothing was charged" in line for line in out)
    assert provider.jobs == []
