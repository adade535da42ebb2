"""Telegram adapter (python-telegram-bot): updates in, core outcomes out."""
