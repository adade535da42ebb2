"""`build_provider(settings)`: the image provider for `EASEL_IMAGE_API`, on one OpenAI client with the SDK's
own retries off (a retried generation can be billed twice), explicit timeouts, and the SDK's aiohttp-based
HTTP client (`core.provider.transport`), which costs less CPU per call than its default one."""

from __future__ import annotations

from typing import Any

import openai
from openai import AsyncOpenAI

from core.errors import ConfigError
from core.ports import ImageProvider
from core.provider.images_api import ImagesProvider
from core.provider.responses import ResponsesProvider
from core.provider.transport import http_client
from core.settings import CoreSettings

MIN_CONNECTIONS = 1000  # the SDK's own default bound on open connections


def provider_options(settings: CoreSettings, *, backoff: float = 0.5) -> dict[str, Any]:
    """The providers' options from settings."""
    return {
        "image_model": settings.image_model,
        "partial_images": settings.partial_images,
        "retries": settings.provider_retries,
        "timeout": settings.provider_timeout,
        "backoff": backoff,
        "background": settings.background_mode and settings.image_api != "images",
        "call_timeout": settings.provider_call_timeout,
    }


def provider_timeout(settings: CoreSettings) -> openai.Timeout:
    """A whole call may read for `EASEL_PROVIDER_TIMEOUT`; connecting takes at most 10 s."""
    return openai.Timeout(settings.provider_timeout, connect=min(10.0, settings.provider_timeout))


def max_connections(settings: CoreSettings) -> int:
    """Open connections to the provider: room for every image call in flight (`EASEL_PROVIDER_CONCURRENCY`)
    and as many cancels, polls and deletes beside them."""
    return max(MIN_CONNECTIONS, 2 * settings.provider_concurrency)


def build_provider(settings: CoreSettings, client: AsyncOpenAI | None = None, *, backoff: float = 0.5) -> ImageProvider:
    """`base_url=None` lets the SDK read OPENAI_BASE_URL. Tests may pass their own `client`.

    The client's own timeout is the whole-call one (a plain stream may be silent while the model thinks);
    background-mode calls pass the short per-call timeout themselves."""
    if client is None:
        timeout = provider_timeout(settings)
        try:
            client = AsyncOpenAI(
                api_key=settings.openai_api_key or None,
                base_url=settings.openai_base_url or None,
                max_retries=0,
                timeout=timeout,
                # Opens no connection until the first call (aiohttp's session is made then).
                http_client=http_client(timeout=timeout, max_connections=max_connections(settings)),
            )
        except openai.OpenAIError:
            raise ConfigError("OPENAI_API_KEY is required to generate images") from None
    options = provider_options(settings, backoff=backoff)
    if settings.image_api == "images":
        del options["background"], options["call_timeout"]
        return ImagesProvider(client, **options)
    return ResponsesProvider(client, host_model=settings.host_model, **options)


def transparent_model(settings: CoreSettings) -> str | None:
    """The image model to use for transparent requests, when the operator named one."""
    return settings.transparent_model or None
