"""Real checkpoints by their shapes alone: the `config.json` (and image processor settings) of
checkpoints users fine-tune, shipped in `real_configs/`, so that parameter counts, memory
estimates (`ptpeft plan`, docs/models.md) and random-weight checkpoints of the exact real shapes
(`make bench-gpu`) need no download.

One directory per checkpoint, named by its hub id with `/` -> `--`: the checkpoint's own
`config.json` (transcribed from the hub; shape fields and special token ids), optionally its
`preprocessor_config.json`, and `ptpeft.json` with the ptpeft family that loads it (optionally
also `tokenizer`: the real tokenizer's special tokens at their ids, for the stand-in tokenizer of
`make bench-gpu`'s random-weight checkpoints, scripts/bench_checkpoints.py). Adding a checkpoint
is adding a directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ptpeft_cli.errors import UserError

REAL_CONFIGS = Path(__file__).resolve().parent / "real_configs"


@dataclass(frozen=True)
class RealCheckpoint:
    hub_id: str  # e.g. llava-hf/llava-1.5-7b-hf
    family: str  # the `model=` that loads it
    directory: Path  # config.json (+ preprocessor_config.json) of the real checkpoint

    @property
    def architecture(self) -> str:
        """The transformers class named by the checkpoint's config (`architectures[0]`)."""
        return str(json.loads((self.directory / "config.json").read_text())["architectures"][0])


@cache
def real_checkpoints() -> dict[str, RealCheckpoint]:
    """hub id -> RealCheckpoint, for every shipped config directory."""
    found: dict[str, RealCheckpoint] = {}
    for marker in sorted(REAL_CONFIGS.glob("*/ptpeft.json")):
        info = json.loads(marker.read_text())
        found[info["hub_id"]] = RealCheckpoint(hub_id=info["hub_id"], family=info["family"], directory=marker.parent)
    return found


def real_checkpoint(hub_id: str) -> RealCheckpoint:
    """The shipped shapes of `hub_id`; a UserError lists the known ones."""
    known = real_checkpoints()
    if hub_id not in known:
        raise UserError(f"no shipped config for checkpoint {hub_id!r}; known: {', '.join(known)}")
    return known[hub_id]


def real_config(hub_id: str) -> Any:
    """The checkpoint's transformers config, read offline from the shipped `config.json`."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(real_checkpoint(hub_id).directory))


def build_model(hub_id: str, device: Any = "meta") -> Any:
    """The checkpoint's architecture with uninitialised weights on `device` (`meta`: shapes only,
    no memory). The caller picks the default dtype (e.g. bf16 for a real-size GPU build)."""
    import torch
    import transformers

    checkpoint = real_checkpoint(hub_id)
    cls = getattr(transformers, checkpoint.architecture)
    config = real_config(hub_id)
    with torch.device(device):
        return cls(config)
