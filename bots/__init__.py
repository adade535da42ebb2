"""Adapters (Discord, Telegram, console), the `easel` CLI and the composition root."""
