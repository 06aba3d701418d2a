"""The Chainlit web chat, a thin adapter over `Conversation` and `Run` (see app.py at the top level)."""
