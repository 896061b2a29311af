"""Checkpoints that resume a run to identical results, written so that a crash never leaves one
that looks complete.

A checkpoint directory `checkpoints/<stage>-<step>` holds the trainable weights (safetensors), the
trainer state (optimizer, scheduler, grad scaler, RNG states, data position; loaded with
`weights_only=True`), at a stage's end also the method's own saved weights, and last a manifest
with the sha256 of every file. It is built in a temp dir and published with one rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ptpeft_cli.errors import UserError

CHECKPOINTS_DIR = "checkpoints"
MANIFEST = "checkpoint.json"
TRAINABLE_FILE = "trainable.safetensors"
STATE_FILE = "trainer_state.pt"
METHOD_DIR = "method"  # the method's own save format, written at stage ends


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    stage: int  # index of the stage it belongs to
    step: int  # optimizer steps done in that stage
    stage_done: bool  # written at the stage's end: the next stage starts from METHOD_DIR
    global_step: int


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state(),
                             "numpy": _numpy_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
            "cached": cached}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state((numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    """random.setstate wants the nested tuples that torch.save turned into lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save(run_dir: Path, *, stage: int, step: int, global_step: int, trainable: dict[str, torch.Tensor],
         trainer_state: dict[str, Any], stage_done: bool, save_method: Any = None, keep: int = 2) -> Path:
    """Publish one checkpoint atomically; keep the newest `keep` mid-stage ones (stage ends stay:
    the next stages are rebuilt from them)."""
    root = run_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = f"{stage}-{'end' if stage_done else f'{step:07d}'}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, str(tmp / TRAINABLE_FILE))
        torch.save(trainer_state, tmp / STATE_FILE)
        if save_method is not None:
            save_method(tmp / METHOD_DIR)
        files = {str(p.relative_to(tmp)): _sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {"stage": stage, "step": step, "global_step": global_step, "stage_done": stage_done, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    mid_stage = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and not p.name.endswith("-end"))
    for old in mid_stage[:-keep] if keep > 0 else mid_stage:
        shutil.rmtree(old)
    return final


def verify(path: Path) -> Checkpoint:
    """The checkpoint at `path`, its files checked against the manifest; a UserError names the
    first file that is missing or altered (never loaded silently)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"checkpoint {path} has no readable {MANIFEST} ({error}); it is incomplete") from None
    for name, digest in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise UserError(f"checkpoint {path} is incomplete: {name} is missing")
        if _sha256(file) != digest:
            raise UserError(f"checkpoint {path} is corrupt: {name} does not match its checksum")
    return Checkpoint(path=path, stage=int(manifest["stage"]), step=int(manifest["step"]),
                      stage_done=bool(manifest["stage_done"]), global_step=int(manifest["global_step"]))


def latest(run_dir: Path) -> Checkpoint | None:
    """The newest published checkpoint (by stage, then step; a stage end after its steps)."""
    root = run_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return None
    found = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not found:
        return None

    def order(path: Path) -> tuple[int, int]:
        stage, _, step = path.name.partition("-")
        return int(stage), (1 << 62) if step == "end" else int(step)

    return verify(max(found, key=order))


def stage_end(run_dir: Path, stage: int) -> Checkpoint:
    return verify(run_dir / CHECKPOINTS_DIR / f"{stage}-end")


def load_trainable(model: nn.Module, checkpoint: Checkpoint) -> None:
    """Copy the saved trainable tensors into the rebuilt model; names and shapes must all match."""
    from ptpeft_cli.methods.base import load_into

    tensors = load_file(str(checkpoint.path / TRAINABLE_FILE))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    if set(tensors) != trainable:
        raise UserError(f"checkpoint {checkpoint.path} does not fit the rebuilt model "
                        f"({len(set(tensors) ^ trainable)} trainable parameter names differ); was the config changed?")
    load_into(model, tensors, f"checkpoint {checkpoint.path}")


def trainer_state(checkpoint: Checkpoint, rank: int | None = None, world_size: int = 1) -> dict[str, Any]:
    """The saved trainer state; with `rank`, the RNG state is that rank's (mid-stage checkpoints
    hold one per process of the run, which must be resumed on as many processes)."""
    state = torch.load(checkpoint.path / STATE_FILE, weights_only=True)
    if rank is not None and isinstance(state.get("rng"), list):
        if len(state["rng"]) != world_size:
            raise UserError(f"checkpoint {checkpoint.path} was written by {len(state['rng'])} process(es); "
                            f"resume it on as many (this launch has {world_size})")
        state["rng"] = state["rng"][rank]
    return state
