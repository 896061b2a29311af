"""Checkpoints that resume a run to identical results, written so that a crash never leaves one
that looks complete, and so that a 7B run's weights are written once.

A checkpoint directory `checkpoints/<stage>-<step>` holds what resuming needs and nothing twice:
mid-stage, the trainable weights (safetensors) and the trainer state (optimizer, scheduler, grad
scaler, RNG states, data position; loaded with `weights_only=True`); at a stage's end, the
method's own saved weights (`method/`, what the next stage, the stage cache and the run's
`weights/` are built from: the latter two hard-link its files) and the finished stages' results.
Last comes a manifest with a digest of every file, computed while the big files were written
(storage.py: xxh3_128; older manifests' sha256 still verify). It is built in a temp dir and
published with one rename; the space it needs is checked first, and a save that cannot fit
stops the run with one line, keeping the checkpoints already there.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from ptpeft_cli import storage
from ptpeft_cli.errors import UserError

CHECKPOINTS_DIR = "checkpoints"
MANIFEST = "checkpoint.json"
TRAINABLE_FILE = "trainable.safetensors"  # mid-stage only (a stage end has METHOD_DIR)
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


def save(run_dir: Path, *, stage: int, step: int, global_step: int, trainer_state: dict[str, Any],
         stage_done: bool, trainable: dict[str, torch.Tensor] | None = None,
         save_method: Callable[[Path], Any] | None = None, method_bytes: int = 0, keep: int = 2) -> Path:
    """Publish one checkpoint atomically; keep the newest `keep` mid-stage ones (stage ends stay:
    the next stages, the stage cache and `weights/` are built from them).

    `trainable` (mid-stage) and `trainer_state` are written here, hashed on the way;
    `save_method(dir)` writes the method's files (stage ends), `method_bytes` estimating their size
    for the space check. Temp dirs of saves that were killed are removed first: rank 0 is the only
    writer of its run dir, so none of them can be in use."""
    root = run_dir / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    storage.remove_dead_temp_dirs(root, single_writer=True)
    name = f"{stage}-{'end' if stage_done else f'{step:07d}'}"
    what = f"checkpoint {name}"
    hint = f"; the checkpoints already there are kept: free space, then resume={run_dir}"
    estimate = storage.tensor_bytes(trainable) + storage.tensor_bytes(trainer_state) + int(method_bytes)
    storage.require_space(root, estimate, what, hint)
    tmp = storage.temp_dir(root, name)
    try:
        with storage.out_of_space_stops(root, estimate, what, hint):
            if trainable is not None:
                storage.write_safetensors({k: v.detach() for k, v in trainable.items()}, tmp / TRAINABLE_FILE)
            storage.torch_save(trainer_state, tmp / STATE_FILE)
            if save_method is not None:
                save_method(tmp / METHOD_DIR)
            manifest = {"stage": stage, "step": step, "global_step": global_step, "stage_done": stage_done,
                        "hash": storage.HASH, "files": storage.digests(tmp)}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            final = root / name
            storage.publish_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    mid_stage = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and not p.name.endswith("-end"))
    for old in mid_stage[:-keep] if keep > 0 else mid_stage:
        shutil.rmtree(old)
    return final


def publish_weights(run_dir: Path, out_dir: Path, n_stages: int, save: Callable[[Path], Any]) -> None:
    """The run's trained weights in `out_dir`: the last stage-end checkpoint's method files,
    hard-linked (a copy only where links are impossible, see storage.link_tree); `save(dir)`
    writes them where there is no such checkpoint (a method without stages). Built in a temp dir
    and renamed into place, so a kill never leaves a half `weights/` that looks whole."""
    source = run_dir / CHECKPOINTS_DIR / f"{n_stages - 1}-end" / METHOD_DIR
    storage.remove_dead_temp_dirs(out_dir.parent, prefix=f"{out_dir.name}.", single_writer=True)
    tmp = storage.temp_dir(out_dir.parent, out_dir.name)
    try:
        if n_stages > 0 and source.is_dir():
            storage.link_tree(source, tmp, what=f"the run's {out_dir.name}/")
        else:
            save(tmp)
        storage.publish_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def verify(path: Path) -> Checkpoint:
    """The checkpoint at `path`, its files checked against the manifest; a UserError names the
    first file that is missing or altered (never loaded silently)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"checkpoint {path} has no readable {MANIFEST} ({error}); it is incomplete") from None
    algorithm = manifest.get("hash", storage.LEGACY_HASH)
    for name, digest in manifest["files"].items():
        file = path / name
        if not file.is_file():
            raise UserError(f"checkpoint {path} is incomplete: {name} is missing")
        if storage.file_digest(file, algorithm) != digest:
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
