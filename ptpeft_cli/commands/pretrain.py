"""`ptpeft pretrain`: build the tiny LMM from scratch, pre-train it, probe it, save it atomically.

The output directory is a plain `save_pretrained` checkpoint (model + processor, safetensors)
plus `manifest.json` recording how it was made and how good it is zero-shot.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import transformers

from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.tiny_llava import TinyLlavaFamily
from ptpeft_cli.synthetic.pretraining.pretrain import PretrainRecipe, pretrain
from ptpeft_cli.synthetic.probe import ProbeSet, meets_floor, run_probe
from ptpeft_cli.training.hardware import resolve_hardware


def world_probe_set(world_root: Path, world_spec: Any = None, split: str = "test") -> ProbeSet:
    """The synthetic world's held-out split, read from its official-format files: the questions
    of the kinds the model is pre-trained on (the compositional default task is downstream-only,
    so it would not measure pre-training)."""
    from PIL import Image

    from ptpeft_cli.synthetic.world import Scene
    from ptpeft_cli.synthetic.writer import WorldSpec, ensure_world

    paths = ensure_world(Path(world_root), world_spec or WorldSpec())
    questions = json.loads(paths.vqa_questions(split, "pretrain_kinds").read_text())["questions"]
    annotations = json.loads(paths.vqa_annotations(split, "pretrain_kinds").read_text())["annotations"]
    scenes_raw = json.loads(paths.scenes_json.read_text())
    image_ids = sorted({int(q["image_id"]) for q in questions})
    scenes = {i: Scene.from_dict(scenes_raw[str(i)]) for i in image_ids}
    images = {i: Image.open(paths.image_file(split, i)).convert("RGB") for i in image_ids}
    return ProbeSet(scenes=scenes, images=images, questions=questions, annotations=annotations)


def _atomic_replace(tmp_dir: Path, out_dir: Path) -> None:
    """Swap the finished temp dir in; an old checkpoint is removed only after the swap."""
    old = out_dir.with_name(f".{out_dir.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out_dir.exists():
        out_dir.rename(old)
    tmp_dir.rename(out_dir)
    if old.exists():
        shutil.rmtree(old)


def run_pretrain(
    recipe: PretrainRecipe,
    out_dir: Path,
    world_root: Path,
    world_spec: Any = None,
    probe_set: ProbeSet | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, probe, write `out_dir` (model, processor, manifest.json); returns the manifest.

    The probe reads the synthetic world's test split under `world_root` (written on first use
    with `world_spec`, default WorldSpec()); pass `probe_set` to probe other held-out data.
    """
    out_dir = Path(out_dir)
    started = time.perf_counter()
    model, processor, reports = pretrain(recipe, progress=progress)
    family = TinyLlavaFamily()
    loaded = LoadedModel(model=model, processor=processor, family=family,
                         extras={"max_length": 64})
    probe_start = time.perf_counter()
    probe_data = probe_set or world_probe_set(world_root, world_spec)
    metrics = run_probe(family, loaded, probe_data)
    probe_s = round(time.perf_counter() - probe_start, 2)

    manifest = {
        "family": family.name,
        "recipe": recipe.to_dict(),
        "recipe_hash": recipe.fingerprint(),
        "seeds": {"recipe": recipe.seed},
        "steps": {r.name: r.steps for r in reports if r.name != "data"},
        "wall_time_s": {**{r.name: r.wall_time_s for r in reports}, "probe": probe_s,
                        "total": round(time.perf_counter() - started, 2)},
        "stages": [asdict(r) for r in reports],
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "device": str(resolve_hardware(recipe.device, "auto").device),
        "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor(),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "zero_shot": metrics,
        "meets_floor": meets_floor(metrics),
    }
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    model.save_pretrained(tmp_dir, safe_serialization=True)
    processor.save_pretrained(tmp_dir)
    (tmp_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    _atomic_replace(tmp_dir, out_dir)
    return manifest


def pretrain_entry(cfg: Any) -> dict[str, Any]:
    """Hydra task for `ptpeft pretrain`: recipe from conf/recipe/<preset>.yaml plus overrides."""
    import sys

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from ptpeft_cli.errors import UserError
    from ptpeft_cli.models.tiny_llava import shipped_checkpoint_dir

    try:
        recipe = PretrainRecipe.from_dict(OmegaConf.to_container(cfg.recipe, resolve=True))
    except TypeError as error:
        print(f"ptpeft: error: bad recipe option: {error}", file=sys.stderr)
        raise SystemExit(UserError.exit_code) from None
    out_dir = Path(cfg.out_dir) if cfg.out_dir else shipped_checkpoint_dir()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    manifest = run_pretrain(recipe, out_dir, Path(cfg.world_root), world_spec=_probe_world_spec())
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    zero_shot = manifest["zero_shot"]
    print(f"zero-shot: object precision {zero_shot['object_precision']:.3f}, "
          f"VQA accuracy {zero_shot['vqa_accuracy']:.2f}; meets floor: {manifest['meets_floor']}")
    print(f"checkpoint: {out_dir}")
    print(f"run dir: {run_dir}")
    return manifest


def _probe_world_spec() -> Any:
    """The downstream splits only: the probe reads the test split, no pre-training images."""
    from ptpeft_cli.synthetic.writer import WorldSpec

    return WorldSpec(n_pretrain=0)
