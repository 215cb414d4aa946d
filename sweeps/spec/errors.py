"""Spec errors: every problem of a spec in one `SpecError`, one line each (key path, bad value, what is valid)."""
from __future__ import annotations

import difflib
from typing import Iterable


class SpecError(ValueError):
    """Every problem found in a sweep spec, one per line (key path, bad value, what would be valid)."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''}{where}:"
        super().__init__("\n".join([head] + [f"  - {p}" for p in self.problems]))


def closest(name: str, valid: Iterable[str]) -> str:
    """"did you mean 'x'? " for the closest valid name, or "" when none is close."""
    match = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f"did you mean '{match[0]}'? " if match else ""


def unknown(path: str, key: str, valid: Iterable[str]) -> str:
    """The message for an unknown key under `path`, with the closest valid key and the full list."""
    valid = list(valid)
    return f"{path}: unknown key '{key}'; {closest(key, valid)}valid keys: {', '.join(valid)}"
