"""COCO caption metrics with the official toolkit (pycocoevalcap + its Java PTB tokenizer).

``caption_scores`` and ``caption_scores_from_files`` feed the same tokenized captions to the
same scorers in the same order as ``pycocoevalcap.eval.COCOEvalCap.evaluate``, so both give the
official numbers. We do not call ``COCOEvalCap.evaluate`` itself because it always runs SPICE,
which downloads Stanford CoreNLP at first use (impossible offline), and always starts a new
METEOR Java process (10-40 s of start-up here); METEOR is optional and its process is kept.

CIDEr weighs n-grams by their document frequency over the whole evaluated set: score the full
eval split at once (a single image always gets CIDEr 0).
"""

from __future__ import annotations

import contextlib
import functools
import io
from pathlib import Path

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
from pycocotools.coco import COCO

from ptpeft_cli.errors import UserError

# The keys COCOEvalCap.eval holds, in its order.
CAPTION_METRICS: tuple[str, ...] = (
    "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SPICE",
)  # fmt: skip

Captions = dict[int, list[dict[str, str]]]


def _spice_score(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    from pycocoevalcap.spice.spice import Spice  # imported late: only the opt-in path needs it

    try:
        scorer = Spice()  # downloads Stanford CoreNLP on first use
    except OSError as error:
        raise UserError(
            "SPICE needs Stanford CoreNLP 3.6.0, which pycocoevalcap downloads on first use "
            f"into its spice/lib folder, and the download failed ({error}); "
            "run once with network access or leave spice off"
        ) from error
    score, _ = scorer.compute_score(gts, res)
    return float(score)


@functools.lru_cache(maxsize=1)
def _shared_meteor() -> Meteor:
    """One METEOR Java process for the life of this Python process: starting it (loading its
    paraphrase table) takes 10-40 s on 2 cores, more than scoring 5000 captions with it (~8 s),
    and training evaluates several times per run. Its own lock serialises concurrent calls."""
    return Meteor()


def start_meteor() -> None:
    """Start the shared METEOR process now (it loads in the background; scoring waits for it)."""
    _shared_meteor()


def _meteor_score(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    scorer = _shared_meteor()
    try:
        return float(scorer.compute_score(gts, res)[0])
    except Exception:
        # A failed exchange leaves the pipe out of step and the scorer's lock held: stop this
        # process (its __del__ must not block on the lock) and start afresh next time.
        _shared_meteor.cache_clear()
        scorer.meteor_p.kill()
        if scorer.lock.locked():
            scorer.lock.release()
        raise


def _score_tokenized(
    gts: dict[int, list[str]], res: dict[int, list[str]], *, spice: bool, meteor: bool
) -> dict[str, float]:
    """Run the COCOEvalCap scorers on PTB-tokenized references and predictions."""
    scores: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)  # verbose only prints
    for order, value in enumerate(bleu, start=1):
        scores[f"Bleu_{order}"] = float(value)
    if meteor:
        scores["METEOR"] = _meteor_score(gts, res)
    scores["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if spice:
        scores["SPICE"] = _spice_score(gts, res)
    return scores


def _score_raw(
    references: Captions, predictions: Captions, *, spice: bool, meteor: bool
) -> dict[str, float]:
    """Tokenize COCO-style caption records ({"caption": ...}) and score them."""
    if not references:
        raise ValueError("no images to score")
    for image_id, refs in references.items():
        if not refs:
            raise ValueError(f"image {image_id} has no reference caption")
        if len(predictions.get(image_id, ())) != 1:
            raise ValueError(
                f"image {image_id} has {len(predictions.get(image_id, ()))} predicted captions, "
                "expected exactly 1"
            )
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize(references)
    res = tokenizer.tokenize(predictions)
    return _score_tokenized(gts, res, spice=spice, meteor=meteor)


def caption_scores(
    predictions: dict[int, str],
    references: dict[int, list[str]],
    spice: bool = False,
    meteor: bool = True,
) -> dict[str, float]:
    """Official COCO caption metrics of one caption per image against its references.

    Both dicts must hold the same image ids. Returns the pycocoevalcap keys (Bleu_1..4,
    METEOR unless ``meteor=False``, ROUGE_L, CIDEr, SPICE if ``spice=True``) on a 0-1 scale.
    """
    missing = [i for i in references if i not in predictions]
    extra = [i for i in predictions if i not in references]
    if missing or extra:
        raise ValueError(image_id_mismatch_message(missing, extra))
    gts = {i: [{"caption": caption} for caption in refs] for i, refs in references.items()}
    res = {i: [{"caption": predictions[i]}] for i in references}
    return _score_raw(gts, res, spice=spice, meteor=meteor)


def caption_scores_from_files(
    results_json: Path,
    annotations_json: Path,
    spice: bool = False,
    meteor: bool = True,
) -> dict[str, float]:
    """Official metrics of a COCO result file (``[{"image_id", "caption"}]``) against a COCO
    caption annotation file, loaded with pycocotools exactly as COCOEvalCap expects."""
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco = COCO(str(annotations_json))
        coco_results = coco.loadRes(str(results_json))
    image_ids = coco.getImgIds()
    gts = {i: coco.imgToAnns[i] for i in image_ids}
    res = {i: coco_results.imgToAnns[i] for i in image_ids}
    return _score_raw(gts, res, spice=spice, meteor=meteor)


def image_id_mismatch_message(missing: list[int], extra: list[int]) -> str:
    """One line saying how the predicted image ids differ from the annotated ones."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} annotated image(s) have no prediction (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} predicted image id(s) are not annotated (e.g. {extra[0]})")
    return "predictions do not match the annotation set: " + "; ".join(parts)
