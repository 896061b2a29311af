"""Save -> load round trips, plain-peft loading of LoRA, PT-PEFT stage hand-over and cache key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from method_fixtures import (
    TinyLlavaTestFamily,
    build_llava,
    llava_batch,
    method_cfg,
    train_steps,
    with_labels,
)
from peft import PeftModel

from ptpeft_cli.methods import get_method
from ptpeft_cli.methods.prefix import find_prefix
from ptpeft_cli.methods.pt_peft import prefix_stage_fingerprint
from ptpeft_cli.models.base import LoadedModel

ROUND_TRIPS = {
    "full": ("full", 1, {}),
    "lora": ("lora", 1, {}),
    "adapter": ("adapter", 1, {}),
    "prefix_input": ("prefix", 1, {}),
    "prefix_kv_plain": ("prefix", 1, {"prefix__mode": "kv", "prefix__projection": False}),
    "pt_lora": ("pt_peft", 2, {"prefix__mode": "kv"}),
    "pt_adapter": ("pt_peft", 2, {"stage2": "adapter"}),
}


def fresh() -> LoadedModel:
    return LoadedModel(build_llava(), None, TinyLlavaTestFamily())


def train_through(loaded: LoadedModel, name: str, stages: int, overrides: dict) -> None:
    method, cfg = get_method(name), method_cfg(name, **overrides)
    for stage in range(stages):
        method.setup_stage(loaded, cfg, stage)
        train_steps(loaded.model, with_labels(llava_batch()), steps=2)


@pytest.mark.parametrize("case", list(ROUND_TRIPS))
def test_save_load_gives_identical_logits(case: str, tmp_path: Path) -> None:
    name, stages, overrides = ROUND_TRIPS[case]
    trained = fresh()
    train_through(trained, name, stages, overrides)
    batch = llava_batch(seed=5)
    with torch.no_grad():
        expected = trained.model(**batch).logits
        untrained = build_llava()(**batch).logits
    assert (expected - untrained).abs().max() > 1e-4  # training changed something worth saving

    get_method(name).save(trained, tmp_path)
    restored = fresh()
    get_method(name).load(restored, method_cfg(name, **overrides), tmp_path)
    with torch.no_grad():
        got = restored.model(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert not any(p.requires_grad for p in restored.model.parameters())  # loaded for eval


def test_lora_dir_loads_with_plain_peft(tmp_path: Path) -> None:
    trained = fresh()
    train_through(trained, "lora", 1, {})
    get_method("lora").save(trained, tmp_path)
    plain = PeftModel.from_pretrained(build_llava(), str(tmp_path))
    batch = llava_batch(seed=5)
    with torch.no_grad():
        torch.testing.assert_close(
            plain(**batch).logits, trained.model(**batch).logits, atol=1e-6, rtol=0
        )


def test_pt_peft_lora_dir_is_plain_peft(tmp_path: Path) -> None:
    trained = fresh()
    train_through(trained, "pt_peft", 2, {})
    get_method("pt_peft").save(trained, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lora", "prefix"]
    plain = PeftModel.from_pretrained(build_llava(), str(tmp_path / "lora"))
    ours = {n: p for n, p in trained.model.named_parameters() if ".lora_" in n}
    theirs = {n: p for n, p in plain.named_parameters() if ".lora_" in n}
    assert ours.keys() == theirs.keys() and ours
    assert all(torch.equal(ours[n], theirs[n]) for n in ours)


@pytest.mark.parametrize("stage2", ["lora", "adapter"])
def test_stage2_starts_from_the_exact_stage1_prefix(stage2: str, tmp_path: Path) -> None:
    method, cfg = get_method("pt_peft"), method_cfg("pt_peft", stage2=stage2)
    loaded = fresh()
    method.setup_stage(loaded, cfg, 0)
    train_steps(loaded.model, with_labels(llava_batch()), steps=2)
    stage1 = {n: p.detach().clone() for n, p in find_prefix(loaded.model).named_parameters()}
    method.save(loaded, tmp_path)

    method.setup_stage(loaded, cfg, 1)  # in memory
    cached = fresh()
    method.load(cached, cfg, tmp_path)  # from the stage-1 cache, as a later run would
    method.setup_stage(cached, cfg, 1)
    for model in (loaded.model, cached.model):
        prefix = dict(find_prefix(model).named_parameters())
        assert all(torch.equal(prefix[n], stage1[n]) and prefix[n].requires_grad for n in stage1)
    batch = llava_batch(seed=5)
    with torch.no_grad():
        torch.testing.assert_close(
            cached.model(**batch).logits, loaded.model(**batch).logits, atol=0, rtol=0
        )
    trainable = [
        sorted(n for n, p in model.named_parameters() if p.requires_grad)
        for model in (cached.model, loaded.model)
    ]
    assert trainable[0] == trainable[1] and trainable[0]


def test_fingerprint_tracks_stage1_only() -> None:
    method = get_method("pt_peft")
    schedule = {"batch_size": 32, "scheduler": "linear", "max_steps": 300}

    def key(**overrides: object) -> str:
        return method.stage_fingerprint(
            "tiny", "synthetic-0", method_cfg("pt_peft", **overrides), 0, schedule
        )

    base = key()
    assert len(base) == 64
    assert key(stage2="adapter") == base
    assert key(lora__r=4, adapter__bottleneck=8, train_prefix_in_stage2=False) == base
    assert key(prefix__length=4) != base
    assert key(prefix__mode="kv") != base
    assert key(lr=5e-3) != base  # stage 1 inherits the method lr when stage1.lr is unset
    cfg = method_cfg("pt_peft")
    cfg.stage2_options.lr = 1.0
    assert method.stage_fingerprint("tiny", "synthetic-0", cfg, 0, schedule) == base
    cfg.stage1.lr = 1.0
    assert method.stage_fingerprint("tiny", "synthetic-0", cfg, 0, schedule) != base
    assert (
        method.stage_fingerprint("tiny", "synthetic-0", method_cfg("pt_peft"), 1, schedule) != base
    )
    prefix = method_cfg("pt_peft").prefix
    assert prefix_stage_fingerprint("tiny", "d", prefix, 0, {}) != prefix_stage_fingerprint(
        "tiny", "d", prefix, 1, {}
    )


def test_fingerprint_is_the_same_for_a_hydra_config() -> None:
    """The lead passes OmegaConf nodes; the key must not depend on the container type."""
    from omegaconf import OmegaConf

    cfg = method_cfg("pt_peft")
    node = OmegaConf.structured(cfg)
    schedule = {"batch_size": 32}
    method = get_method("pt_peft")
    assert method.stage_fingerprint(
        "m", "d", node, 0, OmegaConf.create(schedule)
    ) == method.stage_fingerprint("m", "d", cfg, 0, schedule)
