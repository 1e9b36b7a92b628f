"""Presets for the published original checkpoints: YAML files in ``config/`` with the architecture
(``model:``, read by :func:`perception.model.config.config_from_dict`) and the weights they go with
(``checkpoint: {layout, file}``).

Searched in the source tree's ``config/`` and, for an installed package, in
``<sys.prefix>/share/grounding_dino_ros/config`` (where ``setup.py`` puts ``config/*.yaml``).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from perception.model.config import GroundingDinoConfig, config_from_dict

CHECKPOINT_LAYOUTS = ("original", "hf")  # IDEA-Research .pth names, or Hugging Face save_pretrained names
_PRESET_KEYS = {"model", "checkpoint"}


def preset_dirs() -> list[Path]:
    """Directories searched for presets, in order."""
    source_tree = Path(__file__).resolve().parents[2] / "config"
    return [source_tree, Path(sys.prefix) / "share" / "grounding_dino_ros" / "config"]


def available_presets() -> dict[str, Path]:
    """Preset name (file stem) -> file, for every YAML in :func:`preset_dirs` shaped like a preset."""
    found: dict[str, Path] = {}
    for directory in preset_dirs():
        for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else ():
            values = yaml.safe_load(path.read_text())
            if path.stem not in found and isinstance(values, dict) and set(values) == _PRESET_KEYS:
                found[path.stem] = path
    return found


def load_preset(name_or_path: str | Path) -> tuple[GroundingDinoConfig, dict[str, Any]]:
    """The model config and the ``checkpoint`` section (``layout``, ``file``) of a preset.

    ``name_or_path`` is a preset name (``groundingdino_swint_ogc``) or the path of a YAML file.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        presets = available_presets()
        if str(name_or_path) not in presets:
            raise ValueError(f"unknown preset {str(name_or_path)!r}; available: {sorted(presets)} "
                             f"(searched {[str(d) for d in preset_dirs()]}), or pass the path of a .yaml file")
        path = presets[str(name_or_path)]
    elif not path.is_file():
        raise FileNotFoundError(f"preset file not found: {path}")
    values = yaml.safe_load(path.read_text())
    if not isinstance(values, dict) or set(values) != _PRESET_KEYS:
        found = sorted(values) if isinstance(values, dict) else type(values).__name__
        raise ValueError(f"{path}: a preset has exactly the top-level keys {sorted(_PRESET_KEYS)}, found {found}")
    if not isinstance(values["model"], dict):
        raise ValueError(f"{path}: model must be a mapping of GroundingDinoConfig fields, found {values['model']!r}")
    return config_from_dict(values["model"]), _checkpoint_section(values["checkpoint"], path)


def _checkpoint_section(section: Any, path: Path) -> dict[str, Any]:
    if not isinstance(section, dict) or set(section) != {"layout", "file"}:
        raise ValueError(f"{path}: checkpoint must have exactly the keys ['file', 'layout'], found {section!r}")
    if section["layout"] not in CHECKPOINT_LAYOUTS:
        raise ValueError(f"{path}: checkpoint.layout must be one of {list(CHECKPOINT_LAYOUTS)}, "
                         f"found {section['layout']!r}")
    if not isinstance(section["file"], str) or not section["file"]:
        raise ValueError(f"{path}: checkpoint.file must be a non-empty file name, found {section['file']!r}")
    return dict(section)
