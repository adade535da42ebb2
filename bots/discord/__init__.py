"""Discord adapter (discord.py): interactions and messages in, core outcomes out."""
