"""Chainlit entry point: `chainlit run app.py` (or `parley ui`). The handlers live in parley.web.app."""

import parley.web.app  # noqa: F401  (importing registers the Chainlit handlers)
