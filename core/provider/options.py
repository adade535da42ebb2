"""The knobs both routes share, with their defaults; `core.provider.factory` fills them from settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.provider.retries import RetryPolicy


@dataclass(frozen=True, slots=True)
class ProviderOptions:
    image_model: str = "gpt-image-2"
    partial_images: int = 2  # previews to stream (0-3); 0 means no streaming (outside background mode)
    retries: int = 2  # Easel's own retries, only where safe
    timeout: float | None = None  # bound on one whole call outside background mode
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 20.0  # a longer Retry-After is answered "busy" at once
    max_upload_bytes: int = 20_000_000
    background: bool = False  # Responses route: run rounds in the provider's background mode
    call_timeout: float | None = None  # per HTTP call in background mode (a stalled stream resumes)
    poll_interval: float = 1.0  # first wait between polls of a background response; doubles
    max_poll_interval: float = 15.0
    resume_attempts: int = 3  # stream resumes without new events before falling back to polling
    poll_failures: int = 10  # consecutive failed polls before the round is given up

    @property
    def partials(self) -> int:
        return max(0, min(3, self.partial_images))

    def policy(self, *, whole_call: bool = True) -> RetryPolicy:
        return RetryPolicy(
            retries=max(0, self.retries),
            timeout=self.timeout if whole_call else None,
            backoff=self.backoff,
            max_backoff=self.max_backoff,
            max_retry_after=self.max_retry_after,
        )

    def per_call(self) -> dict[str, Any]:
        """Keyword arguments for one SDK call in background mode (its short HTTP timeout)."""
        return {"timeout": self.call_timeout} if self.call_timeout is not None else {}
