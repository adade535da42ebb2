"""Fake OpenAI, Telegram Bot API and Discord servers on 127.0.0.1, plus hand-written fakes of our own seams."""
