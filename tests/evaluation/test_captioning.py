"""COCO caption metrics: same numbers as pycocoevalcap's own COCOEvalCap on the same files."""

from __future__ import annotations

from pathlib import Path

import pycocoevalcap.eval as coco_eval_module
import pytest
from pycocotools.coco import COCO

from ptpeft_cli.errors import UserError
from ptpeft_cli.evaluation import captioning
from ptpeft_cli.evaluation.captioning import caption_scores, caption_scores_from_files

from .conftest import PREDICTIONS, REFERENCES


class _NoSpice:
    """Stands in for SPICE, which downloads Stanford CoreNLP at first use (offline here)."""

    def compute_score(self, gts: dict, res: dict) -> tuple[float, list[float]]:
        return 0.0, [0.0] * len(gts)

    def method(self) -> str:
        return "SPICE"


def test_files_equal_official_cocoevalcap(
    caption_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    results_path, annotations_path = caption_files
    monkeypatch.setattr(coco_eval_module, "Spice", _NoSpice)
    # Share our METEOR process: the same scorer class, started once (its start is the slow part).
    monkeypatch.setattr(coco_eval_module, "Meteor", captioning._shared_meteor)
    coco = COCO(str(annotations_path))
    official = coco_eval_module.COCOEvalCap(coco, coco.loadRes(str(results_path)))
    official.evaluate()
    expected = {key: value for key, value in official.eval.items() if key != "SPICE"}

    ours = caption_scores_from_files(results_path, annotations_path)
    assert ours == expected
    assert list(ours) == ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"]
    assert 0.0 < ours["METEOR"] < 1.0 and ours["CIDEr"] > 0.0


def test_dicts_equal_files(caption_files: tuple[Path, Path]) -> None:
    results_path, annotations_path = caption_files
    from_files = caption_scores_from_files(results_path, annotations_path, meteor=False)
    assert caption_scores(PREDICTIONS, REFERENCES, meteor=False) == from_files
    assert "METEOR" not in from_files


def test_better_captions_score_higher() -> None:
    exact = {image_id: refs[0] for image_id, refs in REFERENCES.items()}
    wrong = {image_id: "an orange cross at the bottom" for image_id in REFERENCES}
    good = caption_scores(exact, REFERENCES, meteor=False)
    bad = caption_scores(wrong, REFERENCES, meteor=False)
    for metric in ("Bleu_1", "Bleu_4", "ROUGE_L", "CIDEr"):
        assert good[metric] > bad[metric], metric
    assert good["Bleu_1"] == pytest.approx(1.0)


def test_cider_of_a_single_image_is_zero() -> None:
    # Every n-gram of a one-image set has document frequency 1: idf log(1/1) = 0.
    scores = caption_scores(
        {1: "a red circle"}, {1: ["a red circle", "one red circle"]}, meteor=False
    )
    assert scores["CIDEr"] == 0.0
    assert scores["Bleu_1"] > 0.9


def test_image_ids_must_match() -> None:
    with pytest.raises(ValueError, match=r"1 annotated image\(s\) have no prediction \(e.g. 14\)"):
        caption_scores({k: v for k, v in PREDICTIONS.items() if k != 14}, REFERENCES, meteor=False)
    with pytest.raises(ValueError, match=r"not annotated \(e.g. 99\)"):
        caption_scores({**PREDICTIONS, 99: "x"}, REFERENCES, meteor=False)
    with pytest.raises(ValueError, match="no images"):
        caption_scores({}, {}, meteor=False)


def test_spice_failure_is_one_line_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import pycocoevalcap.spice.spice as spice_module

    def offline() -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(spice_module, "get_stanford_models", offline)
    with pytest.raises(UserError, match="SPICE needs Stanford CoreNLP") as caught:
        caption_scores(PREDICTIONS, REFERENCES, meteor=False, spice=True)
    assert "\n" not in str(caught.value)
