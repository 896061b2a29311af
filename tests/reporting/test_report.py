"""`ptpeft report`: tables built only from run dirs (mean +- std over seeds), failed runs listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ptpeft_cli.cli import compose_config, main


def _run_dir(root: Path, name: str, method: str, seed: int, metrics: dict | None, stage2: str = "lora") -> Path:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    cfg = compose_config("train", [f"method={method}", "task=vqa", f"trainer.seed={seed}", f"method.stage2={stage2}"])
    (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    if metrics is None:
        (run / "error.txt").write_text("Traceback ...\nRuntimeError: out of memory\n")
    else:
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_report_means_over_seeds_and_updates_the_results_block(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    _run_dir(runs, "a", "lora", 0, {"eval/vqa_accuracy": 70.0, "params/trainable": 100, "params/trainable_share": 0.01})
    _run_dir(runs, "b", "lora", 1, {"eval/vqa_accuracy": 74.0, "params/trainable": 100, "params/trainable_share": 0.01})
    _run_dir(runs, "c", "pt_peft", 0, {"eval/vqa_accuracy": 80.0}, stage2="adapter")
    _run_dir(runs, "d", "full", 0, None)
    results = tmp_path / "results.md"
    results.write_text("# Results\nprose\n<!-- report:begin -->\nold\n<!-- report:end -->\ntail\n")
    main(["report", f"runs={runs}", f"out={tmp_path / 'out'}", f"update_doc={results}"])
    text = results.read_text()
    assert "old" not in text and text.startswith("# Results\nprose\n") and text.endswith("tail\n")
    assert "| tiny_llava | lora | 2 | 72 ± 2.8 |" in text  # mean and sample std of 70 and 74
    assert "| tiny_llava | pt_adapter | 1 | 80 |" in text
    assert "d: RuntimeError: out of memory" in text
    assert (tmp_path / "out" / "vqa.csv").read_text().startswith("model,method,seeds,VQA acc.")


def test_report_updates_only_its_named_block(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    _run_dir(runs, "a", "lora", 0, {"eval/vqa_accuracy": 70.0, "params/trainable": 100, "params/trainable_share": 0.01})
    results = tmp_path / "results.md"
    results.write_text("<!-- report:begin paper-full -->\nfull\n<!-- report:end paper-full -->\n"
                       "<!-- report:begin paper-quick -->\nquick\n<!-- report:end paper-quick -->\n")
    main(["report", f"runs={runs}", f"out={tmp_path / 'out'}", f"update_doc={results}", "doc_block=paper-quick"])
    text = results.read_text()
    assert "\nfull\n" in text and "quick\n<" not in text and "| tiny_llava | lora | 1 | 70 |" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["report", f"runs={runs}", f"out={tmp_path / 'out'}", f"update_doc={results}", "doc_block=other"])
    assert exit_info.value.code == 2
    assert "has no <!-- report:begin other --> ... <!-- report:end other --> block" in capsys.readouterr().err


def test_report_without_runs_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["report", f"runs={tmp_path}"])
    assert exit_info.value.code == 2
    assert "no ptpeft run dirs" in capsys.readouterr().err


def test_report_shows_retention_beside_the_zero_shot_row_and_draws_the_chart(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _run_dir(runs, "a", "none", 0, {"eval/vqa_accuracy": 25.0, "retention/captioning/CIDEr": 1.0,
                                    "retention/captioning/Bleu_4": 0.3})
    _run_dir(runs, "b", "full", 0, {"eval/vqa_accuracy": 66.0, "retention/captioning/CIDEr": 0.2})
    _run_dir(runs, "c", "full", 1, {"eval/vqa_accuracy": 64.0, "retention/captioning/CIDEr": 0.4})
    main(["report", f"runs={runs}", f"out={tmp_path / 'out'}"])
    retention = (tmp_path / "out" / "vqa_retention.csv").read_text().splitlines()
    assert retention[0] == "model,method,seeds,VQA acc.,captioning/CIDEr"  # headlines only, not BLEU
    assert retention[1:] == ["tiny_llava,none,1,25,1", "tiny_llava,full,2,65 ± 1.4,0.3 ± 0.14"]
    assert (tmp_path / "out" / "vqa.png").stat().st_size > 1000
