"""What an OpenAI failure means for Easel: the `core.errors.ProviderError` to raise (worded by catalog id,
never with provider text) and whether trying again is safe (no image can have been made, hence billed)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import openai

from core.errors import (
    PreviousResponseGone,
    ProviderBusy,
    ProviderError,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    SafetyRefusal,
)

# Codes that only the operator can fix (billing, key, model access): never retried, always logged.
OPERATOR_CODES = frozenset(
    {
        "insufficient_quota",
        "billing_hard_limit_reached",
        "billing_not_active",
        "account_deactivated",
        "access_terminated",
        "invalid_api_key",
        "model_not_found",
        "organization_deactivated",
        "unsupported_country_region_territory",
    }
)
SAFETY_CODES = frozenset({"moderation_blocked", "image_content_policy_violation", "content_policy_violation"})
# Codes that say the input picture was the problem (SDK types/responses/response_error.py).
IMAGE_CODES = frozenset(
    {
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
        "invalid_image_file",
    }
)
# In-band codes that blame the request itself (a retry would fail the same way).
REQUEST_CODES = frozenset({"invalid_prompt", "context_length_exceeded", "invalid_request_error"})

BUSY_WAIT = 30.0  # what we suggest when the provider failed without telling us how long to wait
UNREACHABLE_WAIT = 60.0
MIN_SHOWN_WAIT = 5.0


def busy(wait: float = BUSY_WAIT) -> ProviderBusy:
    return ProviderBusy("provider.busy", retry_after=wait, wait=math.ceil(wait))


def stopped(wait: float = BUSY_WAIT) -> ProviderBusy:
    return ProviderBusy("provider.stopped", retry_after=wait, wait=math.ceil(wait))


def unreachable(wait: float = UNREACHABLE_WAIT) -> ProviderBusy:
    return ProviderBusy("provider.unreachable", retry_after=wait, wait=math.ceil(wait))


def safety(stage: str | None) -> SafetyRefusal:
    if stage in ("input", "output"):
        return SafetyRefusal(f"provider.safety.{stage}")
    return SafetyRefusal("provider.safety")


def timed_out() -> ProviderTimeout:
    return ProviderTimeout("provider.timeout")


@dataclass
class Failure:
    """What one failed attempt means: the error to raise, and whether a new attempt is safe."""

    error: ProviderError
    retryable: bool = False
    wait: float | None = None  # the provider's Retry-After, if it gave one
    code: str | None = None  # the provider's error code, for the log


class InBand(Exception):  # an internal signal of this package, never leaves the provider
    """A failure reported inside a 200 answer (stream event or response body)."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.error.msg_id)
        self.failure = failure


@dataclass
class Progress:
    """What one attempt has seen so far; output means an image may be billed, so no retry."""

    output: bool = False
    request_id: str | None = None


def retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after` seconds or HTTP date)."""
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def connect_failed(exc: BaseException) -> bool:
    """True when the request never reached the server (refused or unresolvable), so a retry is free."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or any(
            cls.__name__ == "ConnectError" for cls in type(seen).__mro__
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def moderation_stage(body: object) -> str | None:
    if isinstance(body, dict):
        details = body.get("moderation_details")
        if isinstance(details, dict):
            stage = details.get("moderation_stage")
            return stage if isinstance(stage, str) else None
    return None


def refuses_transparency(param: object, message: object) -> bool:
    """A 400 that blames the transparent background (the model does not offer it)."""
    text = str(message or "").lower()
    return param == "background" or "transparen" in text


def classify(exc: openai.APIError, progress: Progress, *, max_retry_after: float) -> Failure:
    """Map an SDK exception. Raises `PreviousResponseGone` for an unknown `previous_response_id`."""
    if isinstance(exc, openai.APIStatusError) and exc.request_id:
        progress.request_id = exc.request_id
    if isinstance(exc, openai.APITimeoutError):
        return Failure(timed_out())
    if isinstance(exc, openai.APIResponseValidationError):
        return Failure(stopped())
    if isinstance(exc, openai.APIConnectionError):
        if connect_failed(exc) and not progress.output:
            return Failure(unreachable(), retryable=True)
        # The request may have reached the server: an image may be on its way, so no retry.
        return Failure(stopped())
    if isinstance(exc, openai.APIStatusError):
        return classify_status(exc, progress, max_retry_after=max_retry_after)
    # An error payload inside a stream: no status, only code and type.
    return classify_code(exc.code, exc.type, moderation_stage(exc.body), progress, message=exc.message)


def classify_status(exc: openai.APIStatusError, progress: Progress, *, max_retry_after: float) -> Failure:
    status, code = exc.status_code, exc.code
    if code == "previous_response_not_found":
        raise PreviousResponseGone(exc.request_id or "") from None
    if code in SAFETY_CODES:
        return Failure(safety(moderation_stage(exc.body)))
    if status in (401, 403, 404) or code in OPERATOR_CODES or exc.type == "insufficient_quota":
        return Failure(ProviderUnavailable("provider.unavailable"))
    if status == 429:
        wait = retry_after(exc.response.headers)
        if wait is not None and wait > max_retry_after:
            return Failure(busy(wait))
        # Shown only once our own retries are spent: by then a few seconds more is the honest advice.
        shown = max(wait, MIN_SHOWN_WAIT) if wait is not None else BUSY_WAIT
        return Failure(busy(shown), retryable=True, wait=wait)
    if status >= 500:
        return Failure(busy(), retryable=not progress.output)
    if code in IMAGE_CODES:
        return Failure(ProviderRejected("provider.bad_picture"))
    if status in (408, 409):
        return Failure(busy())
    if status == 400 and refuses_transparency(exc.param, exc.message):
        return Failure(ProviderRejected("provider.no_transparency", reason="no_transparency"))
    return Failure(ProviderRejected("provider.rejected"))


def classify_code(
    code: str | None, type_: str | None, stage: str | None, progress: Progress, *, message: object = None
) -> Failure:
    """Failures reported inside a 200 answer (stream error payloads, failed responses or image calls)."""
    failure = _in_band(code, type_, stage, progress, message)
    failure.code = code
    return failure


def _in_band(code: str | None, type_: str | None, stage: str | None, progress: Progress, message: object) -> Failure:
    if code in SAFETY_CODES:
        return Failure(safety(stage))
    if code in OPERATOR_CODES or type_ == "insufficient_quota":
        return Failure(ProviderUnavailable("provider.unavailable"))
    if code in IMAGE_CODES:
        return Failure(ProviderRejected("provider.bad_picture"))
    if code == "rate_limit_exceeded":
        return Failure(busy())
    if code in REQUEST_CODES or type_ in ("invalid_request_error", "image_generation_user_error"):
        if refuses_transparency(None, message):
            return Failure(ProviderRejected("provider.no_transparency", reason="no_transparency"))
        return Failure(ProviderRejected("provider.rejected"))
    # A server-side failure: safe to try again only if no image can have been made yet.
    return Failure(stopped(), retryable=not progress.output)
