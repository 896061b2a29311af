"""`run_pretrain` end to end with a tiny recipe: it writes a loadable checkpoint and a manifest."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from ptpeft_cli.commands.pretrain import run_pretrain
from ptpeft_cli.models.tiny_llava import TinyLlavaFamily
from ptpeft_cli.synthetic.pretraining.build import TinyShape
from ptpeft_cli.synthetic.pretraining.pretrain import PretrainRecipe, StageBudget
from ptpeft_cli.synthetic.probe import question_kind
from ptpeft_cli.synthetic.text import CAPTION_PROMPT
from ptpeft_cli.synthetic.writer import WorldSpec

TINY = PretrainRecipe(
    seed=1,
    shape=TinyShape(vision_hidden=32, vision_layers=1, vision_heads=2, vision_intermediate=64,
                    text_hidden=32, text_layers=1, text_heads=2, text_intermediate=64,
                    clip_text_hidden=32, clip_text_layers=1, projection_dim=16),
    n_scenes=40,
    text_draws=1,
    clip=StageBudget(3, 8, 1e-3),
    dense=StageBudget(2, 4, 1e-3),
    align=StageBudget(2, 4, 1e-3),
    multimodal=StageBudget(3, 4, 1e-3),
    render_workers=1,
    device="cpu",
)
WORLD = WorldSpec(seed=0, n_pretrain=4, n_train=4, n_val=2, n_test=3)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("pretrain")
    out = root / "ckpt"
    manifest = run_pretrain(TINY, out, root / "world", world_spec=WORLD, progress=False)
    return out, manifest


def test_checkpoint_and_manifest_are_written(built: tuple) -> None:
    out, manifest = built
    assert (out / "model.safetensors").exists()
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["recipe_hash"] == TINY.fingerprint() == manifest["recipe_hash"]
    assert on_disk["steps"] == {"clip": 3, "dense": 2, "align": 2, "multimodal": 3}
    assert set(on_disk["wall_time_s"]) >= {"clip", "align", "multimodal", "probe", "total"}
    zero_shot = on_disk["zero_shot"]
    assert 0.0 <= zero_shot["object_precision"] <= 1.0
    assert 0.0 <= zero_shot["vqa_accuracy"] <= 100.0
    assert zero_shot["n_images"] == 3 and zero_shot["n_questions"] > 0
    assert on_disk["versions"]["transformers"]
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # no temp dirs left


def test_checkpoint_loads_through_the_family_and_generates(built: tuple) -> None:
    out, _ = built
    family = TinyLlavaFamily()
    loaded = family.load(SimpleNamespace(name_or_path=str(out), dtype="auto", max_length=64))
    import numpy as np

    from ptpeft_cli.synthetic.world import render, sample_scene

    scene = sample_scene(np.random.default_rng(0), 0)
    batch = family.encode(loaded, [render(scene)], [family.prompt(CAPTION_PROMPT)])
    texts = family.generate(loaded, batch, max_new_tokens=4)
    assert len(texts) == 1 and isinstance(texts[0], str)
    assert loaded.model.config.text_config.hidden_size == 32


def test_pretraining_is_deterministic_from_the_seed(built: tuple) -> None:
    """A second build from the same recipe reproduces the shipped weights bit for bit."""
    from transformers import LlavaForConditionalGeneration

    from ptpeft_cli.synthetic.pretraining.pretrain import pretrain

    out, _ = built
    saved = LlavaForConditionalGeneration.from_pretrained(str(out)).state_dict()
    again, _, _ = pretrain(TINY, progress=False)
    fresh = again.state_dict()
    assert saved.keys() == fresh.keys()
    for name, tensor in saved.items():
        assert torch.equal(tensor, fresh[name]), name


def test_fingerprint_covers_results_not_speed() -> None:
    assert replace(TINY, render_workers=4, device="cuda").fingerprint() == TINY.fingerprint()
    assert replace(TINY, seed=2).fingerprint() != TINY.fingerprint()
    assert replace(TINY, clip=StageBudget(4, 8, 1e-3)).fingerprint() != TINY.fingerprint()


def test_question_kinds() -> None:
    assert question_kind("what color is the", "other") == "colour"
    assert question_kind("what shape is the", "other") == "shape"
    assert question_kind("how many", "number") == "count"
    assert question_kind("is there a", "yes/no") == "yes/no"
