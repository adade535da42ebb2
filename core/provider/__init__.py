"""The image provider (OpenAI routes), input checks with Pillow, and the image cache.

`factory.build_provider` builds the `core.ports.ImageProvider` for the settings: `responses.py` (the
Responses route, background mode in `background.py`, stream reading in `stream.py`) or `images_api.py`.
Failures are classified in `classify.py`; safe retries in `retries.py`; uploads in `uploads.py`."""
