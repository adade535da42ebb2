"""`build_provider(settings)`: the image provider for `EASEL_IMAGE_API`, on one OpenAI client with the SDK's
own retries off (a retried generation can be billed twice) and explicit timeouts."""

from __future__ import annotations

from typing import Any

import openai
from openai import AsyncOpenAI

from core.errors import ConfigError
from core.ports import ImageProvider
from core.provider.images_api import ImagesProvider
from core.provider.responses import ResponsesProvider
from core.settings import CoreSettings


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


def build_provider(settings: CoreSettings, client: AsyncOpenAI | None = None, *, backoff: float = 0.5) -> ImageProvider:
    """`base_url=None` lets the SDK read OPENAI_BASE_URL. Tests may pass their own `client`.

    The client's own timeout is the whole-call one (a plain stream may be silent while the model thinks);
    background-mode calls pass the short per-call timeout themselves."""
    if client is None:
        try:
            client = AsyncOpenAI(
                api_key=settings.openai_api_key or None,
                base_url=settings.openai_base_url or None,
                max_retries=0,
                timeout=openai.Timeout(settings.provider_timeout, connect=min(10.0, settings.provider_timeout)),
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
