"""The tiny LMM shipped in the package: it loads, it is the committed recipe, and it can see."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ptpeft_cli.cli import CONF_DIR
from ptpeft_cli.models import get_family
from ptpeft_cli.models.tiny_llava import shipped_checkpoint_dir
from ptpeft_cli.synthetic.pretraining.pretrain import PretrainRecipe
from ptpeft_cli.synthetic.probe import KIND_CHANCE, run_probe, synthetic_probe_set


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((shipped_checkpoint_dir() / "manifest.json").read_text())


def test_manifest_matches_committed_recipe(manifest: dict) -> None:
    committed = PretrainRecipe.from_dict(OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / "recipe" / "cpu.yaml")))
    assert manifest["recipe_hash"] == committed.fingerprint()
    assert PretrainRecipe.from_dict(manifest["recipe"]).fingerprint() == manifest["recipe_hash"]
    assert manifest["meets_floor"] is True


def test_shipped_checkpoint_meets_the_floor_on_a_fresh_probe() -> None:
    """A probe the manifest never saw (another seed): captions name what is there, answers beat chance."""
    family = get_family("tiny_llava")
    loaded = family.load(OmegaConf.create({"name_or_path": None, "dtype": "fp32", "max_length": 64}))
    metrics = run_probe(family, loaded, synthetic_probe_set(60, seed=2024))
    assert metrics["object_precision"] >= 0.80
    assert metrics["vqa_accuracy"] >= 60
    for kind, chance in KIND_CHANCE.items():
        assert metrics["vqa_accuracy_per_kind"][kind] > 2 * chance, kind
