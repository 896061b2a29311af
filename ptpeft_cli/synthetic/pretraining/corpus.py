"""In-memory pre-training data: scenes sampled from a seed, pre-rendered once, texts tokenised once.

Pre-training draws its data straight from the world generator (not the corpus file on disk):
it is faster (no PNG decoding), and the pool size is a recipe knob. Images are rendered by a
process pool so data never bottlenecks a GPU run; batches are then pure tensor indexing.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from ptpeft_cli.models.base import ModelFamily
from ptpeft_cli.synthetic.pretraining.build import IMAGE, NUM_IMAGE_TOKENS
from ptpeft_cli.synthetic.text import (
    CAPTION_INSTRUCTION,
    CAPTION_PROMPT,
    VQA_PROMPT,
    pretrain_texts,
)
from ptpeft_cli.synthetic.world import Scene, render, sample_scene

IGNORE_INDEX = -100


CHUNK = 256  # scenes per worker job; fixed, so the data never depends on the worker count


@dataclass
class Corpus:
    """Scenes, their rendered images (uint8, N x 3 x H x W) and (scene, instruction, response)."""

    scenes: list[Scene]
    images: torch.Tensor
    records: list[tuple[int, str, str]]


def _make_chunk(job: tuple[int, int, int, int, int]) -> tuple[list[Scene], np.ndarray, list]:
    """One worker job: sample, render and describe CHUNK scenes from rng([seed, chunk])."""
    seed, chunk, count, draws, image_size = job
    rng = np.random.default_rng([seed, chunk])
    scenes = [sample_scene(rng, chunk * CHUNK + i) for i in range(count)]
    images = np.stack([np.asarray(render(s, image_size, seed), dtype=np.uint8) for s in scenes])
    records = [(chunk * CHUNK + i, instruction, response)
               for i, scene in enumerate(scenes) for _ in range(draws)
               for instruction, response in pretrain_texts(scene, rng)]
    return scenes, images, records


def generate_corpus(n_scenes: int, seed: int, draws: int, workers: int,
                    image_size: int = 64) -> Corpus:
    """The whole in-memory corpus; chunks run in a process pool when `workers` > 1."""
    jobs = [(seed, c, min(CHUNK, n_scenes - c * CHUNK), draws, image_size)
            for c in range((n_scenes + CHUNK - 1) // CHUNK)]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            parts = list(pool.map(_make_chunk, jobs))
    else:
        parts = [_make_chunk(job) for job in jobs]
    scenes = [s for part in parts for s in part[0]]
    images = torch.from_numpy(np.concatenate([part[1] for part in parts]))
    records = [r for part in parts for r in part[2]]
    return Corpus(scenes, images.permute(0, 3, 1, 2).contiguous(), records)


def render_images(scenes: Sequence[Scene], seed: int, image_size: int = 64) -> torch.Tensor:
    """uint8 tensor (N, 3, H, W) of the given scenes (used for held-out data and tests)."""
    arrays = np.stack([np.asarray(render(s, image_size, seed), dtype=np.uint8) for s in scenes])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 -> the image processor's pixel_values (rescale 1/255, CLIP mean/std)."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean_t) / std_t


@dataclass
class Pair:
    """One (image, prompt, target) training example, already tokenised."""

    scene_index: int
    prompt_ids: list[int]
    target_ids: list[int]
    is_caption: bool


def prompt_text(family: ModelFamily, instruction: str) -> str:
    """Map a corpus instruction to the prompt a downstream task sends (same as zero-shot use)."""
    if instruction == CAPTION_INSTRUCTION:
        return family.prompt(CAPTION_PROMPT)
    return family.prompt(VQA_PROMPT.format(question=instruction))


def build_pairs(
    records: Sequence[tuple[int, str, str]],
    tokenizer: PreTrainedTokenizerFast,
    family: ModelFamily,
) -> list[Pair]:
    """Tokenise (scene index, instruction, response) records. Ids match
    `TinyLlavaFamily.encode` exactly: BOS, the prompt with `<image>` expanded, " target", EOS."""
    expanded = [
        tokenizer.bos_token
        + prompt_text(family, r[1]).replace(IMAGE, IMAGE * NUM_IMAGE_TOKENS)
        for r in records
    ]
    prompt_ids = tokenizer(expanded, add_special_tokens=False)["input_ids"]
    target_ids = tokenizer([" " + r[2] for r in records], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return [
        Pair(r[0], p, t + [eos], r[1] == CAPTION_INSTRUCTION)
        for r, p, t in zip(records, prompt_ids, target_ids, strict=True)
    ]


def collate(pairs: Sequence[Pair], pixel_values: torch.Tensor, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded teacher-forcing batch; labels only on target tokens (and EOS)."""
    sequences = [p.prompt_ids + p.target_ids for p in pairs]
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    labels = torch.full((len(pairs), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, (pair, seq) in enumerate(zip(pairs, sequences, strict=True)):
        input_ids[row, : len(seq)] = torch.tensor(seq)
        attention[row, : len(seq)] = 1
        start = len(pair.prompt_ids)
        labels[row, start : len(seq)] = torch.tensor(pair.target_ids)
    index = torch.tensor([p.scene_index for p in pairs])
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "labels": labels,
        "pixel_values": pixel_values[index.to(pixel_values.device)],
    }


def sample_scenes(n: int, seed: int, first_id: int = 0) -> list[Scene]:
    """`n` scenes from one seeded generator; ids start at `first_id` (held-out data)."""
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, first_id + i) for i in range(n)]
