"""Parsing `/quota` arguments (DESIGN §4) into a small value; the core validates numbers and permissions.

    /quota                      my credits (or, replying to someone, theirs)
    /quota <user>               someone's credits
    /quota set <n> [<user>]     a user's daily credits
    /quota grant <n> [<user>]   one-off extra credits for today
    /quota default <n>          the community's default daily credits
    /quota ban|unban [<user>]   block / unblock

`<user>` is a numeric id or an `@username`; without it the target is the author of the replied-to message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.errors import BadRequest
from core.events import UserRef
from core.texts import say

VERBS = ("show", "set", "grant", "default", "ban", "unban")
NEEDS_NUMBER = ("set", "grant", "default")
NEEDS_TARGET = ("set", "grant", "ban", "unban")

USAGE = "tg.usage.quota"  # catalog ids (core/texts/locale/*/telegram.po)
NEED_TARGET = "tg.quota.need_target"

_USERNAME = re.compile(r"@[A-Za-z0-9_]{3,32}")
_NUMBER = re.compile(r"[+-]?\d{1,9}")


class UsageError(BadRequest):
    """The arguments don't fit `/quota`: a catalog id (the usage text, safe to show), rendered in the asker's
    language by `text(lang)`."""

    reason = "usage"

    def __init__(self, msg_id: str, /, *, usage: str | None = None, **params: object) -> None:
        super().__init__(msg_id)
        self.params.update(params)
        self.usage = usage  # a usage id said after the message

    def text(self, lang: str) -> str:
        said = super().text(lang)
        if self.usage is None:
            return said
        return said + ("" if said.endswith(("。", "！", "？")) else " ") + say(lang, self.usage)


def verb_usage(verb: str) -> str:
    """The usage id of one verb (`tg.usage.quota_set`), or of the whole command."""
    return f"tg.usage.quota_{verb}" if verb in NEEDS_NUMBER + NEEDS_TARGET else USAGE


@dataclass(frozen=True, slots=True)
class QuotaCommand:
    verb: str
    amount: int | None = None
    user: UserRef | None = None  # named in the arguments; the adapter falls back to the replied-to author


def parse_user(token: str, verb: str = "show") -> UserRef:
    if _USERNAME.fullmatch(token):
        return UserRef(username=token[1:])
    if token.isdigit() or (token.startswith("-") and token[1:].isdigit()):
        return UserRef(user_id=token)
    raise UsageError("tg.quota.not_a_user", token=token[:40], usage=verb_usage(verb))


def parse_quota(args: list[str]) -> QuotaCommand:
    if not args:
        return QuotaCommand("show")
    verb = args[0].lower()
    rest = args[1:]
    if verb not in VERBS:
        # `/quota <user>`: someone's credits.
        if len(args) == 1:
            return QuotaCommand("show", user=parse_user(args[0]))
        raise UsageError(USAGE)
    amount = None
    if verb in NEEDS_NUMBER:
        if not rest or not _NUMBER.fullmatch(rest[0]):
            raise UsageError("tg.quota.needs_number", verb=verb)
        amount, rest = int(rest[0]), rest[1:]
    if len(rest) > 1 or (verb == "default" and rest):
        raise UsageError(verb_usage(verb))
    return QuotaCommand(verb, amount, parse_user(rest[0], verb) if rest else None)
