"""`evaluate` module: COCO caption metrics (pycocoevalcap: BLEU 1-4, METEOR, ROUGE-L, CIDEr,
optional SPICE), usable offline.

Load it by path (``ptpeft_cli.evaluation.metrics.load_metric("coco_caption")``):
``evaluate.load("bleu")`` needs the Hub, and the Hub's BLEU is not the COCO one (different
tokenizer, no CIDEr). Shares its code with ``ptpeft_cli.evaluation.captioning.caption_scores``.
"""

import datasets
import evaluate

from ptpeft_cli.evaluation.captioning import caption_scores

_DESCRIPTION = """COCO caption evaluation with the official toolkit (pycocoevalcap) and its PTB
tokenizer. CIDEr uses document frequencies over the whole evaluated set: compute on the full
split, not per batch.
"""

_CITATION = """@article{chen2015microsoft,
  title={Microsoft {COCO} Captions: Data Collection and Evaluation Server},
  author={Chen, Xinlei and Fang, Hao and Lin, Tsung-Yi and Vedantam, Ramakrishna and Gupta,
          Saurabh and Doll{\\'a}r, Piotr and Zitnick, C. Lawrence},
  journal={arXiv:1504.00325}, year={2015}}
"""

_INPUTS = """
Args:
    predictions: list of str, one generated caption per image.
    references: list of list[str], the reference captions of the same images, in the same order.
    meteor: bool, compute METEOR (a Java process; default True).
    spice: bool, compute SPICE (downloads Stanford CoreNLP on first use; default False).
Returns:
    {"Bleu_1".."Bleu_4", "METEOR", "ROUGE_L", "CIDEr"[, "SPICE"]: float}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class CocoCaption(evaluate.Metric):
    """pycocoevalcap metrics over (caption, reference captions) pairs."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Sequence(datasets.Value("string")),
                }
            ),
            reference_urls=["https://github.com/salaniz/pycocoevalcap"],
        )

    def _compute(
        self,
        predictions: list[str],
        references: list[list[str]],
        meteor: bool = True,
        spice: bool = False,
    ) -> dict[str, float]:
        # Positions stand in for image ids: the toolkit only needs them to pair captions.
        return caption_scores(
            dict(enumerate(predictions)),
            dict(enumerate(references)),
            spice=spice,
            meteor=meteor,
        )
