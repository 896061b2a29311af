"""The tiny LMM's pre-training recipe, staged the way real LMMs are built.

(a) contrastive CLIP pre-training of the vision tower against a throw-away text tower;
(b) alignment: vision tower frozen, projector + language model trained on captions (the LM is
    random here, unlike real LLaVA, so it must learn the language while the projector aligns);
(c) multimodal pre-training on the whole mix (captions + every question type), the vision tower
    unfrozen at a lower learning rate so patch features can sharpen for shape.
Deterministic from `recipe.seed`; device-aware (CUDA + bf16 autocast when available).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import (
    CLIPConfig,
    CLIPModel,
    LlavaForConditionalGeneration,
    LlavaProcessor,
)

from ptpeft_cli.models.tiny_llava import TinyLlavaFamily
from ptpeft_cli.synthetic.pretraining import corpus
from ptpeft_cli.synthetic.pretraining.build import (
    TinyShape,
    build_model,
    build_processor,
    clip_text_config,
    vision_config,
)
from ptpeft_cli.synthetic.pretraining.dense import PatchHeads, patch_labels
from ptpeft_cli.synthetic.text import vocabulary_words
from ptpeft_cli.training.hardware import Hardware, resolve_hardware
from ptpeft_cli.training.loop import run_stage


@dataclass(frozen=True)
class StageBudget:
    """Length and optimiser settings of one stage; steps=0 skips the stage."""

    steps: int
    batch_size: int
    lr: float


@dataclass(frozen=True)
class PretrainRecipe:
    """Everything that determines the pre-trained weights (hashed by `fingerprint`)."""

    seed: int = 0
    shape: TinyShape = field(default_factory=TinyShape)
    # Defaults are the shipped build, sized for one H100/H200 (see PRESETS for CPU sizes).
    n_scenes: int = 30000
    text_draws: int = 3
    clip: StageBudget = field(default_factory=lambda: StageBudget(2500, 256, 1e-3))
    # Dense patch supervision of the vision tower (see tiny/dense.py); steps=0 skips it.
    dense: StageBudget = field(default_factory=lambda: StageBudget(1500, 256, 2e-3))
    align: StageBudget = field(default_factory=lambda: StageBudget(300, 128, 1e-3))
    multimodal: StageBudget = field(default_factory=lambda: StageBudget(5000, 128, 5e-4))
    # 1.0: strong CLIP features alone left shape at chance (measured), so the tower must keep
    # learning at full rate in stage (c).
    vision_lr_scale: float = 1.0
    caption_fraction: float = 0.35
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    # Not part of the hash: they change speed, not results.
    render_workers: int = field(default=0, compare=False)
    device: str = field(default="auto", compare=False)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainRecipe:
        """From a plain (e.g. Hydra-resolved) nested dict; unknown keys raise TypeError."""
        data = dict(data)
        if "shape" in data:
            data["shape"] = TinyShape(**data["shape"])
        for stage in ("clip", "dense", "align", "multimodal"):
            if stage in data:
                data[stage] = StageBudget(**data[stage])
        return cls(**data)

    def fingerprint(self) -> str:
        """Short hash of every result-determining field."""
        data = {k: v for k, v in asdict(self).items() if k not in ("render_workers", "device")}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


PRESETS: dict[str, PretrainRecipe] = {
    "gpu": PretrainRecipe(),
    # ~10 min on 2 idle CPU cores: learns colour/count/position, not shape (below the floor).
    # The shipped build: ~25 min on 2 idle CPU cores. The dense stage is what makes shape
    # readable; the tower is then frozen (vision_lr_scale=0), which also halves the LM stages' cost.
    "cpu": PretrainRecipe(n_scenes=8000, text_draws=2, clip=StageBudget(60, 64, 2e-3),
                          dense=StageBudget(1200, 64, 3e-3), align=StageBudget(100, 32, 1e-3),
                          multimodal=StageBudget(2000, 32, 1.5e-3), vision_lr_scale=0.0),
    # Plumbing only (seconds): a real but tiny model.
    "smoke": PretrainRecipe(
        n_scenes=64, text_draws=1,
        shape=TinyShape(vision_hidden=32, vision_layers=1, vision_heads=2, vision_intermediate=64,
                        text_hidden=32, text_layers=1, text_heads=2, text_intermediate=64,
                        clip_text_hidden=32, clip_text_layers=1, projection_dim=16),
        clip=StageBudget(3, 8, 1e-3), dense=StageBudget(2, 4, 1e-3), align=StageBudget(2, 4, 1e-3),
        multimodal=StageBudget(3, 4, 1e-3)),
}


@dataclass
class StageReport:
    name: str
    steps: int
    batch_size: int
    wall_time_s: float
    final_loss: float | None  # mean of the last 50 steps; None for a skipped stage
    samples_per_s: float
    patch_shape_accuracy: float | None = None  # dense stage: shape read from single patch tokens


def _train(
    name: str,
    module: nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    budget: StageBudget,
    recipe: PretrainRecipe,
    hardware: Hardware,
    progress: bool,
    param_groups: list[dict] | None = None,
) -> StageReport:
    """One stage on the shared training loop (AdamW + cosine); the loss closure draws and moves
    its own batch from resident tensors, so the loop's batch source is a stream of placeholders."""
    if budget.steps <= 0:
        return StageReport(name, 0, budget.batch_size, 0.0, None, 0.0)
    losses: list[float] = []
    result = run_stage(
        module, itertools.repeat(None), name=f"pretrain/{name}", lr=budget.lr, max_steps=budget.steps,
        grad_accum=1, weight_decay=recipe.weight_decay, warmup_ratio=recipe.warmup_ratio, scheduler="cosine",
        max_grad_norm=recipe.max_grad_norm, hardware=hardware, log_every=1,
        log=lambda row: losses.append(row["train/loss"]), loss_fn=lambda _: loss_fn(), param_groups=param_groups,
        batch_size=lambda _: budget.batch_size, warmup_steps=int(recipe.warmup_ratio * budget.steps),
        progress=progress)
    return StageReport(name, budget.steps, budget.batch_size, round(result.seconds, 2),
                       round(float(np.mean(losses[-50:])), 4), round(result.samples_per_second, 1))


class _Sampler:
    """Seeded mixture sampler over tokenised pairs (captions vs questions)."""

    def __init__(self, pairs: list[corpus.Pair], caption_fraction: float, seed: int) -> None:
        self.pairs = pairs
        self.captions = np.array([i for i, p in enumerate(pairs) if p.is_caption])
        self.questions = np.array([i for i, p in enumerate(pairs) if not p.is_caption])
        self.caption_fraction = caption_fraction
        self.rng = np.random.default_rng(seed)

    def draw(self, n: int, captions_only: bool = False) -> list[corpus.Pair]:
        n_cap = n if captions_only or len(self.questions) == 0 else int(
            self.rng.binomial(n, self.caption_fraction))
        chosen = list(self.rng.choice(self.captions, n_cap))
        if n - n_cap:
            chosen += list(self.rng.choice(self.questions, n - n_cap))
        return [self.pairs[i] for i in chosen]


def _clip_stage(
    model: LlavaForConditionalGeneration,
    processor: LlavaProcessor,
    sampler: _Sampler,
    pixels: torch.Tensor,
    recipe: PretrainRecipe,
    hardware: Hardware,
    progress: bool,
) -> StageReport:
    """Contrastive image-caption training; the vision weights are copied into the LLaVA tower."""
    device = hardware.device
    tokenizer = processor.tokenizer
    text_cfg = clip_text_config(recipe.shape, len(tokenizer), tokenizer.pad_token_id,
                                tokenizer.eos_token_id)
    clip = CLIPModel(CLIPConfig(text_config=text_cfg.to_dict(),
                                vision_config=vision_config(recipe.shape).to_dict(),
                                projection_dim=recipe.shape.projection_dim)).to(device)
    clip.train()
    max_len = clip.config.text_config.max_position_embeddings

    def loss_fn() -> torch.Tensor:
        pairs = sampler.draw(recipe.clip.batch_size, captions_only=True)
        texts = [p.target_ids[:max_len] for p in pairs]  # " caption" + EOS: CLIP pools at EOS
        width = max(len(t) for t in texts)
        ids = torch.full((len(texts), width), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, t in enumerate(texts):
            ids[row, : len(t)] = torch.tensor(t)
            mask[row, : len(t)] = 1
        index = torch.tensor([p.scene_index for p in pairs])
        out = clip(input_ids=ids.to(device), attention_mask=mask.to(device),
                   pixel_values=pixels[index.to(pixels.device)], return_loss=True)
        return out.loss

    report = _train("clip", clip, loss_fn, recipe.clip, recipe, hardware, progress)
    model.model.vision_tower.load_state_dict(clip.vision_model.state_dict())
    return report


def _dense_stage(
    model: LlavaForConditionalGeneration,
    scenes: list,
    images: torch.Tensor,
    pixels: torch.Tensor,
    recipe: PretrainRecipe,
    hardware: Hardware,
    progress: bool,
) -> StageReport:
    """Each patch token learns the shape and colour of the object under it (pretraining/dense.py)."""
    device = hardware.device
    tower = model.model.vision_tower.to(device)
    tower.train()
    shapes, colours = (t.to(device) for t in patch_labels(scenes, images, tower.config.patch_size))
    heads = PatchHeads(tower.config.hidden_size).to(device)
    rng = torch.Generator().manual_seed(recipe.seed + 2)

    def loss_fn() -> torch.Tensor:
        index = torch.randint(0, len(scenes), (recipe.dense.batch_size,), generator=rng).to(device)
        tokens = tower(pixel_values=pixels[index], output_hidden_states=True).hidden_states[-1][:, 1:]
        return heads.loss(tokens, shapes[index], colours[index])

    report = _train("dense", nn.ModuleList([tower, heads]), loss_fn, recipe.dense, recipe, hardware, progress)
    with torch.no_grad():
        held_out = torch.arange(min(512, len(scenes)), device=device)
        tokens = tower(pixel_values=pixels[held_out], output_hidden_states=True).hidden_states[-1][:, 1:]
        report.patch_shape_accuracy = round(heads.accuracy(tokens, shapes[held_out]), 4)
    return report


def _lm_loss_fn(
    model: LlavaForConditionalGeneration,
    sampler: _Sampler,
    pixels: torch.Tensor,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    captions_only: bool,
) -> Callable[[], torch.Tensor]:
    def loss_fn() -> torch.Tensor:
        batch = corpus.collate(sampler.draw(batch_size, captions_only), pixels, pad_id)
        return model(**{k: v.to(device) for k, v in batch.items()}).loss

    return loss_fn


def _set_trainable(model: nn.Module, predicate: Callable[[str], bool]) -> None:
    for name, param in model.named_parameters():
        param.requires_grad_(predicate(name))


def pretrain(
    recipe: PretrainRecipe, progress: bool = True
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor, list[StageReport]]:
    """Build the tiny LMM from scratch and run the three stages; returns it on its device."""
    hardware = resolve_hardware(recipe.device, "auto")
    device = hardware.device
    torch.manual_seed(recipe.seed)
    family = TinyLlavaFamily()
    processor = build_processor(vocabulary_words())
    tokenizer = processor.tokenizer
    model = build_model(recipe.shape, tokenizer)

    start = time.perf_counter()
    workers = recipe.render_workers or os.cpu_count() or 1
    data = corpus.generate_corpus(recipe.n_scenes, recipe.seed, recipe.text_draws, workers)
    pixels = corpus.normalise(data.images, processor.image_processor.image_mean,
                              processor.image_processor.image_std).to(device)  # resident
    pairs = corpus.build_pairs(data.records, tokenizer, family)
    sampler = _Sampler(pairs, recipe.caption_fraction, recipe.seed + 1)
    # The data "stage": steps = number of tokenised (image, prompt, target) pairs.
    reports = [StageReport("data", len(pairs), 0, round(time.perf_counter() - start, 2), None, 0.0)]

    reports.append(_clip_stage(model, processor, sampler, pixels, recipe, hardware, progress))
    reports.append(_dense_stage(model, data.scenes, data.images, pixels, recipe, hardware, progress))

    model.to(device)
    model.train()
    pad = tokenizer.pad_token_id
    _set_trainable(model, lambda n: "vision_tower" not in n)
    reports.append(_train(
        "align", model, _lm_loss_fn(model, sampler, pixels, recipe.align.batch_size, pad, device, True),
        recipe.align, recipe, hardware, progress))

    # vision_lr_scale=0 keeps the (densely supervised) tower frozen: cheaper, and its patch
    # features stay what the dense stage made them.
    _set_trainable(model, lambda n: recipe.vision_lr_scale > 0 or "vision_tower" not in n)
    vision = [p for n, p in model.named_parameters() if "vision_tower" in n and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if "vision_tower" not in n]
    params = [{"params": rest}] + (
        [{"params": vision, "lr": recipe.multimodal.lr * recipe.vision_lr_scale}] if vision else [])
    reports.append(_train(
        "multimodal", model, _lm_loss_fn(model, sampler, pixels, recipe.multimodal.batch_size, pad, device, False),
        recipe.multimodal, recipe, hardware, progress, param_groups=params))
    model.eval()
    return model, processor, reports
