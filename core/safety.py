"""The safety net every adapter puts around its calls into the core, written once.

The core answers through views and notices and raises only what adapters must handle: `DuplicateRequest`
(a redelivered event: answer nothing) and `UserFacingError` (safe to show, in the user's language). Anything
else is a bug: logged with context, answered with the apology, and never shown as exception text."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from core.errors import APOLOGY_ID, DuplicateRequest, UserFacingError
from core.outcomes import Refusal
from core.texts import say

log = logging.getLogger(__name__)

T = TypeVar("T")
Refuse = Callable[[Refusal], Awaitable[object]]
Report = Callable[[Exception], Awaitable[object]]


async def answered(
    work: Awaitable[T], *, lang: str, refuse: Refuse, what: str, report: Report | None = None
) -> T | None:
    """Await `work`; on a redelivery return None quietly; on a user-facing error show it through `refuse`;
    on anything else log it, tell `report` (the operator's channel, if any) and refuse with the apology."""
    try:
        return await work
    except DuplicateRequest:
        return None
    except UserFacingError as error:
        await _quietly(refuse, Refusal(error.text(lang), error.reason, error.ephemeral), what)
    except Exception as error:
        log.exception("%s failed", what)
        if report is not None:
            await report(error)
        await _quietly(refuse, Refusal(say(lang, APOLOGY_ID), "error", ephemeral=True), what)
    return None


async def _quietly(refuse: Refuse, refusal: Refusal, what: str) -> None:
    try:
        await refuse(refusal)
    except Exception:  # the platform refused the answer too: nothing more to say to the user
        log.warning("%s: could not send the answer either", what, exc_info=True)
