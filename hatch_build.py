"""Build hook: the two shipped files outside any folder (app.py, chainlit.md) go into a wheel under
parley/_shipped/, beside the shipped folders (pyproject.toml's `sources`). An editable install leaves them in the
checkout, where parley finds them."""

from __future__ import annotations

from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class ShippedFiles(BuildHookInterface):  # type: ignore[type-arg]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "standard":
            for name in ("app.py", "chainlit.md"):
                build_data["force_include"][name] = f"parley/_shipped/{name}"
