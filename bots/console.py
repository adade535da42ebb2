"""A terminal adapter over the real core: no chat platform needed.

Type a prompt to make an image; `reply N <change>` makes an edit round from round N; `reroll N`;
`edit PATH <change>` edits an image file; quota verbs as in chat; `as NAME` switches to another
(non-moderator) user to try moderation. Images are written to files whose paths are printed."""

from __future__ import annotations

import asyncio
import shlex
import sys
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from core.errors import APOLOGY_ID, DuplicateRequest, UserFacingError
from core.events import Actor, ChannelKey, DeskCommand, InputImage, Platform, RoundRequest, UserRef, Verb
from core.flags import parse_flags
from core.outcomes import Notice, Preview, ProgressDefaults, Refusal, RoundResult
from core.ports import Services
from core.provider.pictures import extension_for
from core.texts import say

KEY = ChannelKey(Platform.CONSOLE, "console", "console")
OPERATOR = Actor(Platform.CONSOLE, "1", "you", username="you", is_moderator=True)

HELP = """\
  <prompt>                      make an image (options: --size square|portrait|landscape|wide|tall,
                                --quality low|medium|high, --background auto|opaque|transparent, --transparent)
  reply N <change>              edit round N (branch from any earlier round)
  reroll N                      a new image for round N's prompt
  cancel N                      stop round N while it is queued or running (refunded)
  edit PATH <change>            edit an image file
  quota [USER]                  credits left today
  quota set N USER | quota grant N USER | quota default N | quota ban USER | quota unban USER
  usage                         usage report
  as NAME | as you              act as another (non-moderator) user, or as yourself (a moderator)
  help | quit"""


class ConsoleView(ProgressDefaults):
    def __init__(self, out: Callable[[str], None], folder: Path) -> None:
        self.out = out
        self.folder = folder

    async def queued(self, position: int) -> None:
        self.out(f"  {say(self._lang, 'progress.queued', count=position - 1)}")

    async def started(self) -> None:
        self.out("  working on it…")

    async def partial(self, preview: Preview) -> None:
        path = self._write(f"round-{preview.round_id}-preview-{preview.index + 1}.png", preview.image)
        self.out(f"  preview {preview.index + 1}: {path}")

    async def deliver(self, result: RoundResult) -> list[str]:
        path = self._write(f"round-{result.number}.{extension_for(result.mime)}", result.image)
        self.out(f"{result.caption}\n  saved: {path}\n  (reply {result.number} <change> to refine it)")
        return [str(result.number)]  # the console's "message id" for a round is its number

    async def refuse(self, refusal: Refusal) -> None:
        self.out(f"  ✗ {refusal.text}")

    @property
    def _lang(self) -> str:
        return self.info.lang if self.info is not None else "en"

    def _write(self, name: str, data: bytes) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        path.write_bytes(data)
        return path.resolve()


class Console:
    def __init__(self, services: Services, folder: Path, out: Callable[[str], None] = print) -> None:
        self.services = services
        self.out = out
        self.view = ConsoleView(out, folder)
        self.actor = OPERATOR

    async def run(self, lines: AsyncIterator[str]) -> None:
        self.out(say("en", "console.welcome"))
        for notice in await self.services.notices.take(Platform.CONSOLE):
            self.out(f"  note: {notice.text}")
            await self.services.notices.sent(notice.id)
        async for line in lines:
            if line.strip() in {"quit", "exit"}:
                break
            try:
                await self.handle(line.strip())
            except DuplicateRequest:
                pass
            except UserFacingError as error:
                self.out(f"  ✗ {error.message}")
            except Exception:  # the console must survive anything the core throws at it
                import logging

                logging.getLogger(__name__).exception("console command failed")
                self.out(f"  ✗ {say('en', APOLOGY_ID)}")

    async def handle(self, line: str) -> None:
        if not line:
            return
        words = line.split(maxsplit=2)
        verb = words[0].lower()
        if verb == "help":
            self.out(HELP)
        elif verb == "as" and len(words) > 1:
            self.actor = OPERATOR if words[1] == "you" else _user(words[1])
            self.out(f"  now acting as {self.actor.display_name}")
        elif verb == "reply" and len(words) >= 2 and words[1].isdigit():
            await self._round(words[2] if len(words) == 3 else "", reply_to=words[1])
        elif verb == "reroll" and len(words) == 2 and words[1].isdigit():
            await self._reroll(int(words[1]))
        elif verb == "cancel" and len(words) == 2 and words[1].isdigit():
            await self._cancel(int(words[1]))
        elif verb == "edit" and len(words) == 3:
            await self._edit(words[1], words[2])
        elif verb in {"quota", "usage"}:
            self.out("  " + (await self._quota(shlex.split(line))).text)
        else:
            await self._round(line)

    async def _round(self, text: str, reply_to: str | None = None, image: InputImage | None = None) -> None:
        try:
            flags = parse_flags(text)
        except UserFacingError as error:
            self.out(f"  ✗ {error.message}")
            return
        request = RoundRequest(
            key=KEY,
            actor=self.actor,
            prompt=flags.prompt,
            idempotency_key=_key(),
            reply_to=reply_to,
            input_image=image,
            options=flags.options,
            send_file=flags.send_file,
        )
        await self.services.rounds.submit(request, self.view)

    async def _reroll(self, number: int) -> None:
        # Buttons carry a round id; the console names rounds by number, which resolves like a reply.
        round_id = await self.services.rounds.round_id(KEY, number)
        if round_id is None:
            self.out(f"  ✗ {say('en', 'console.no_round', number=number)}")
            return
        await self.services.rounds.press(f"reroll:{round_id}", KEY, self.actor, _key(), self.view)

    async def _cancel(self, number: int) -> None:
        round_id = await self.services.rounds.round_id(KEY, number)
        if round_id is None:
            self.out(f"  ✗ {say('en', 'console.no_round', number=number)}")
            return
        await self.services.rounds.press(f"cancel:{round_id}", KEY, self.actor, _key(), self.view)

    async def _edit(self, name: str, instruction: str) -> None:
        path, size = await asyncio.to_thread(_locate, name)

        async def fetch(limit: int) -> bytes:
            data = await asyncio.to_thread(path.read_bytes)
            return data[: limit + 1]  # the core rejects anything over the limit

        if size is None:
            self.out(f"  ✗ No such file: {path}")
            return
        await self._round(instruction, image=InputImage(fetch=fetch, declared_bytes=size, filename=path.name))

    async def _quota(self, args: list[str]) -> Notice:
        desk, actor = self.services.desk, self.actor

        def command(verb: Verb, target: UserRef | None = None, amount: int | None = None) -> DeskCommand:
            return DeskCommand(verb, KEY, actor, _key(), target=target, amount=amount)

        if args[0] == "usage":
            return await desk.run(command(Verb.USAGE))
        rest = args[1:]
        if not rest:
            return await desk.run(command(Verb.SHOW))
        verb = rest[0]
        if verb in {"set", "grant"} and len(rest) == 3 and rest[1].isdigit():
            return await desk.run(command(Verb.SET if verb == "set" else Verb.GRANT, _ref(rest[2]), int(rest[1])))
        if verb == "default" and len(rest) == 2 and rest[1].isdigit():
            return await desk.run(command(Verb.DEFAULT, amount=int(rest[1])))
        if verb in {"ban", "unban"} and len(rest) == 2:
            return await desk.run(command(Verb.BAN if verb == "ban" else Verb.UNBAN, _ref(rest[1])))
        if len(rest) == 1:
            return await desk.run(command(Verb.SHOW, _ref(rest[0])))
        return Notice(say("en", "console.usage.quota"))


def _locate(name: str) -> tuple[Path, int | None]:
    path = Path(name).expanduser()
    return path, path.stat().st_size if path.is_file() else None


def _user(name: str) -> Actor:
    user_id = str(zlib.crc32(name.encode()) % 10**9 + 1000)
    return Actor(Platform.CONSOLE, user_id, name, username=name)


def _ref(name: str) -> UserRef:
    return UserRef(username=name.lstrip("@")) if not name.isdigit() else UserRef(user_id=name)


def _key() -> str:
    return f"console:{uuid.uuid4().hex}"



async def stdin_lines(prompt: str = "easel> ") -> AsyncIterator[str]:
    """Lines typed at the terminal, read off the event loop."""
    while True:
        try:
            line = await asyncio.to_thread(_read, prompt)
        except EOFError:
            return
        yield line


def _read(prompt: str) -> str:
    if sys.stdin.isatty():
        return input(prompt)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\n")
