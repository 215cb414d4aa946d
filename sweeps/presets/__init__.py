"""The shipped sweep presets: the YAML files beside this module (`memsweep presets` lists them).

demo (`make demo`), study and depth (docs/findings.md), paper (one GPU), tiny (the tests). A preset is loaded like
any spec file: `sweeps.spec.load_spec(name)`.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from sweeps.spec.errors import SpecError

PRESETS_DIR = Path(__file__).resolve().parent


def preset_names() -> list[str]:
    """Names of the shipped presets (sweeps/presets/*.yaml)."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def preset_path(name: str) -> Path:
    """Path of a shipped preset; SpecError listing the presets when there is none of that name."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SpecError([f"no preset named {name!r}; presets: {', '.join(preset_names())}"])
    return path


def preset_descriptions() -> dict[str, str]:
    """{preset name: its one-line `description`}."""
    out = {}
    for name in preset_names():
        try:
            data = yaml.safe_load((PRESETS_DIR / f"{name}.yaml").read_text()) or {}
            out[name] = str(data.get("description", "")).strip()
        except (OSError, yaml.YAMLError) as e:
            out[name] = f"(unreadable: {e})"
    return out
