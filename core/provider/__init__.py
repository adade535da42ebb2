"""The image provider (OpenAI routes), input checks with Pillow, and the image cache."""
