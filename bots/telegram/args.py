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

from core.events import UserRef

VERBS = ("show", "set", "grant", "default", "ban", "unban")
NEEDS_NUMBER = ("set", "grant", "default")
NEEDS_TARGET = ("set", "grant", "ban", "unban")

USAGE = (
    "Usage: /quota (your credits) · /quota <user> · /quota set <n> <user> · /quota grant <n> <user> · "
    "/quota default <n> · /quota ban <user> · /quota unban <user>. Instead of <user> you can reply to one of "
    "their messages; <user> is a numeric id or an @username."
)
NEED_TARGET = "Who do you mean? Reply to one of their messages with the command, or add their @username or id."

_USERNAME = re.compile(r"@[A-Za-z0-9_]{3,32}")
_NUMBER = re.compile(r"[+-]?\d{1,9}")


class UsageError(ValueError):
    """The arguments don't fit `/quota`; the message is the usage text (safe to show)."""


@dataclass(frozen=True, slots=True)
class QuotaCommand:
    verb: str
    amount: int | None = None
    user: UserRef | None = None  # named in the arguments; the adapter falls back to the replied-to author


def parse_user(token: str) -> UserRef:
    if _USERNAME.fullmatch(token):
        return UserRef(username=token[1:])
    if token.isdigit() or (token.startswith("-") and token[1:].isdigit()):
        return UserRef(user_id=token)
    raise UsageError(f"“{token[:40]}” is not a user: use a numeric id or an @username. {USAGE}")


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
            raise UsageError(f"/quota {verb} needs a number. {USAGE}")
        amount, rest = int(rest[0]), rest[1:]
    if len(rest) > 1 or (verb == "default" and rest):
        raise UsageError(USAGE)
    return QuotaCommand(verb, amount, parse_user(rest[0]) if rest else None)
