"""Instantiate pieces of a LightningCLI config (used by the ``data`` and ``suite`` subcommands)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import yaml
from jsonargparse import ArgumentParser


def merge(base: dict, update: dict) -> dict:
    """``update`` layered over ``base`` at every depth, as LightningCLI layers ``--config`` files: later keys win,
    nested mappings merge, and a new ``class_path`` starts its ``init_args`` afresh."""
    if "class_path" in update and update["class_path"] != base.get("class_path"):
        base = {}
    out = dict(base)
    for key, value in update.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


def read_config(paths: list[str | Path]) -> dict:
    """Merge YAML configs left to right (:func:`merge`)."""
    merged: dict = {}
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"config file {path} does not exist (configs live under configs/, e.g. configs/svmac.yaml)"
            )
        with open(path) as f:
            cfg = yaml.safe_load(f) or {}
        if not isinstance(cfg, dict):
            raise ValueError(f"config file {path} must hold a YAML mapping, got {type(cfg).__name__}")
        merged = merge(merged, cfg)
    return merged


def instantiate(cfg: dict, section: str, base: type, where: str = "config"):
    """The object a LightningCLI config's ``section`` (``model`` or ``data``: ``class_path`` + ``init_args``) builds."""
    if section not in cfg:
        raise KeyError(f"{where} has no {section!r} section")
    parser = ArgumentParser()
    parser.add_argument(f"--{section}", type=base)
    parsed = parser.parse_object({section: cfg[section]})
    return getattr(parser.instantiate_classes(parsed), section)


def load_datamodule(paths: list[str | Path]) -> L.LightningDataModule:
    """The data module that ``python -m benchmark fit --config <paths>`` would build."""
    return instantiate(read_config(paths), "data", L.LightningDataModule, str([str(p) for p in paths]))


def load_model(paths: list[str | Path]) -> L.LightningModule:
    """The method that ``python -m benchmark fit --config <paths>`` would build."""
    return instantiate(read_config(paths), "model", L.LightningModule, str([str(p) for p in paths]))
