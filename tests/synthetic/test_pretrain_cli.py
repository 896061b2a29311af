"""`ptpeft pretrain` through the CLI: a smoke recipe writes a loadable checkpoint + manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ptpeft_cli.cli import main
from ptpeft_cli.models import get_family


def test_pretrain_smoke_recipe_writes_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    main(["pretrain", "recipe=smoke", "recipe.multimodal.steps=4", f"out_dir={tmp_path / 'ckpt'}",
          f"world_root={tmp_path / 'world'}", f"output_root={tmp_path / 'out'}"])
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("run dir: ")
    manifest = json.loads((tmp_path / "ckpt" / "manifest.json").read_text())
    assert manifest["steps"]["multimodal"] == 4 and manifest["recipe"]["multimodal"]["steps"] == 4
    assert set(manifest["zero_shot"]) >= {"object_precision", "vqa_accuracy"}
    loaded = get_family("tiny_llava").load(OmegaConf.create({"name_or_path": str(tmp_path / "ckpt"),
                                                             "dtype": "fp32", "max_length": 32}))
    assert sum(p.numel() for p in loaded.model.parameters()) == manifest["n_parameters"]


def test_pretrain_unknown_recipe_key_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "recipe=smoke", "recipe.layers=9", f"output_root={tmp_path / 'out'}"])
    assert exit_info.value.code == 2
    assert "recipe.layers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
