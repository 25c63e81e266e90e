"""Instantiate pieces of a LightningCLI config (used by the ``data`` and ``suite`` subcommands)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import yaml
from jsonargparse import ArgumentParser


def read_config(paths: list[str | Path]) -> dict:
    """Merge YAML configs left to right (later keys win, one level deep for ``data``/``model``/``trainer``)."""
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
        for key, value in cfg.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def load_datamodule(paths: list[str | Path]) -> L.LightningDataModule:
    """The data module that ``python -m benchmark fit --config <paths>`` would build."""
    cfg = read_config(paths)
    if "data" not in cfg:
        raise KeyError(f"config {[str(p) for p in paths]} has no 'data' section")
    parser = ArgumentParser()
    parser.add_argument("--data", type=L.LightningDataModule)
    parsed = parser.parse_object({"data": cfg["data"]})
    return parser.instantiate_classes(parsed).data
