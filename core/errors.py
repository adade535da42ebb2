"""One error tree.

`UserFacingError` carries a short, safe, actionable message: the only kind of error text that may reach a
chat. Everything else is logged with context and answered with the catalog's apology (`APOLOGY_ID`), in the
best language known where it is said.
"""

from __future__ import annotations

from datetime import datetime

APOLOGY_ID = "apology"  # the catalog's id of the generic apology


class EaselError(Exception):
    """Base of every error Easel raises on purpose."""


class ConfigError(EaselError):
    """A setting is missing or invalid; the message names the variable."""


class StoreError(EaselError):
    """The database refused or failed an operation (not user-facing)."""


class DuplicateRequest(EaselError):
    """The idempotency key was seen before: a redelivered event, which does nothing."""


class ResponseGone(EaselError):
    """The provider no longer holds a background response (expired or unknown): the round is refunded."""


class PreviousResponseGone(EaselError):
    """The provider no longer knows the parent's response id; the caller falls back to sending the image."""


class UserFacingError(EaselError):
    """An error that is safe to show in a chat: a catalog message id and its parameters, rendered in the
    user's language by `text(lang)`; `message` is the English wording (for logs and tests).

    `reason` is a stable label for metrics and logs; `ephemeral` says whether only the asker should see it.
    Transitional: a first argument that is not a catalog id is taken as English text as it is.
    """

    reason = "refused"
    ephemeral = True

    def __init__(
        self, msg_id: str, /, *, reason: str | None = None, ephemeral: bool | None = None, **params: object
    ) -> None:
        super().__init__(msg_id)
        self.msg_id = msg_id
        self.params = params
        if reason is not None:
            self.reason = reason
        if ephemeral is not None:
            self.ephemeral = ephemeral

    def text(self, lang: str) -> str:
        from core.texts import say

        try:
            return say(lang, self.msg_id, **self.params)
        except KeyError:
            return self.msg_id  # legacy: English text given directly

    @property
    def message(self) -> str:
        return self.text("en")

    def __str__(self) -> str:
        return self.message


class BadRequest(UserFacingError):
    """The request itself is unusable (empty or too long prompt, bad argument)."""

    reason = "bad_request"


class BadInputImage(UserFacingError):
    """The image to edit is not a usable image, or too large."""

    reason = "bad_image"


class UnknownRound(UserFacingError):
    """A reply or button points at something Easel cannot find (any more)."""

    reason = "unknown_round"


class OverQuota(UserFacingError):
    reason = "over_quota"

    def __init__(self, msg_id: str, /, *, left: int, resets_at: datetime, **params: object) -> None:
        super().__init__(msg_id)
        self.params.update(params, left=left, resets_at=resets_at)
        if "cost" in params:  # the catalog's plural form goes by `count`
            self.params.setdefault("count", params["cost"])
        self.left = left
        self.resets_at = resets_at


class BudgetExhausted(UserFacingError):
    """The operator's daily spend ceiling (`EASEL_DAILY_BUDGET_USD`) is reached for today."""

    reason = "budget"
    ephemeral = False

    def __init__(self, msg_id: str, /, *, resets_at: datetime, **params: object) -> None:
        super().__init__(msg_id)
        self.params.update(params, resets_at=resets_at)
        self.resets_at = resets_at


class NotOpen(UserFacingError):
    """The service is not open here (`EASEL_COMMUNITIES`), or is shutting down."""

    reason = "private"


class Banned(UserFacingError):
    reason = "banned"


class Busy(UserFacingError):
    """Too many rounds in flight for this user, or Easel is shutting down."""

    reason = "busy"


class NotModerator(UserFacingError):
    reason = "not_moderator"


class UnknownUser(UserFacingError):
    reason = "unknown_user"


class ProviderError(UserFacingError):
    """The image provider failed; the message says what to do. Never charged."""

    reason = "provider_error"
    ephemeral = False


class SafetyRefusal(ProviderError):
    reason = "safety"


class ProviderBusy(ProviderError):
    reason = "provider_busy"

    def __init__(self, msg_id: str, /, *, retry_after: float, **params: object) -> None:
        super().__init__(msg_id)
        self.params.update(params, retry_after=retry_after)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """Billing exhausted, bad key, or the provider is down: the operator must act."""

    reason = "provider_unavailable"


class ProviderTimeout(ProviderError):
    reason = "timeout"


class ProviderRejected(ProviderError):
    """The provider refused the request as malformed (400 other than safety)."""

    reason = "provider_rejected"


class FatalPlatformError(EaselError):
    """A chat platform refused us for good (bad token, missing intents, a second poller): exit non-zero,
    never restart in a loop. The message is for the operator and names what to fix."""
