"""Zero-shot quality probe of a pre-trained tiny LMM on held-out synthetic scenes.

It asks the model, with the downstream prompts and no fine-tuning, to caption images and answer
questions, and scores the answers with the project's grounded and official VQA metrics. The
build fails loudly when the quality floor is missed, so a weak checkpoint is never shipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from ptpeft_cli.evaluation.vqa_accuracy import vqa_scores
from ptpeft_cli.models.base import LoadedModel
from ptpeft_cli.models.tiny_llava import TinyLlavaFamily
from ptpeft_cli.synthetic.grounding import object_precision_recall
from ptpeft_cli.synthetic.text import CAPTION_PROMPT, VQA_PROMPT, vqa_items
from ptpeft_cli.synthetic.world import Scene, render

# Hard floor for a shipped checkpoint (see the task brief): object precision, VQA accuracy.
FLOOR = {"object_precision": 0.80, "vqa_accuracy": 60.0}
# Chance accuracy (0-100) of the kinds the floor requires at more than twice chance:
# 8 colours, 5 shapes, counts 1-3.
KIND_CHANCE = {"colour": 100 / 8, "shape": 100 / 5, "count": 100 / 3}
# Question kinds by the VQAv2-style question_type prefix; chance accuracy (0-100) for each.
KIND_KEYWORDS: tuple[tuple[str, str], ...] = (
    ("colour", "color"), ("colour", "colour"), ("shape", "shape"), ("count", "how many"),
)


@dataclass
class ProbeSet:
    """Scenes, their images and official-format VQA questions/annotations."""

    scenes: dict[int, Scene]
    images: dict[int, Image.Image]
    questions: list[dict[str, Any]]
    annotations: list[dict[str, Any]]


def question_kind(question_type: str, answer_type: str) -> str:
    """colour | shape | count | yes/no | other, from VQAv2 question/answer types."""
    if answer_type == "yes/no":
        return "yes/no"
    lowered = question_type.lower()
    for kind, keyword in KIND_KEYWORDS:
        if keyword in lowered:
            return kind
    return "other"


def synthetic_probe_set(n_images: int, seed: int, first_id: int = 10_000_000) -> ProbeSet:
    """Held-out scenes generated in memory (a seed disjoint from pre-training), in the official
    VQAv2 annotation layout so the official scorer reads them unchanged."""
    from ptpeft_cli.synthetic.pretraining.corpus import sample_scenes

    rng = np.random.default_rng([seed, 7])
    scenes = sample_scenes(n_images, seed + 7919, first_id)
    questions, annotations = [], []
    for scene in scenes:
        for item in vqa_items(scene, rng):
            qid = len(questions) + first_id
            questions.append({"image_id": scene.image_id, "question": item.question,
                              "question_id": qid})
            annotations.append({
                "image_id": scene.image_id, "question_id": qid,
                "question_type": item.question_type, "answer_type": item.answer_type,
                "multiple_choice_answer": max(set(item.answers), key=item.answers.count),
                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
                            for i, a in enumerate(item.answers)],
            })
    return ProbeSet(
        scenes={s.image_id: s for s in scenes},
        images={s.image_id: render(s, 64, seed) for s in scenes},
        questions=questions,
        annotations=annotations,
    )


def _generate(family: TinyLlavaFamily, loaded: LoadedModel, images: list[Image.Image],
              prompts: list[str], batch_size: int, max_new_tokens: int) -> list[str]:
    outputs: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = family.encode(loaded, images[start:start + batch_size],
                              prompts[start:start + batch_size])
        outputs += family.generate(loaded, batch, max_new_tokens=max_new_tokens)
    return outputs


def run_probe(family: TinyLlavaFamily, loaded: LoadedModel, probe_set: ProbeSet,
              batch_size: int = 64) -> dict[str, Any]:
    """Zero-shot captioning grounding + VQA accuracy (overall, per answer type, per kind)."""
    ids = sorted(probe_set.scenes)
    captions = _generate(family, loaded, [probe_set.images[i] for i in ids],
                         [family.prompt(CAPTION_PROMPT)] * len(ids), batch_size, 24)
    grounding = object_precision_recall(dict(zip(ids, captions, strict=True)), probe_set.scenes)

    answers = _generate(family, loaded, [probe_set.images[q["image_id"]] for q in probe_set.questions],
                        [family.prompt(VQA_PROMPT.format(question=q["question"])) for q in probe_set.questions],
                        batch_size, 4)
    predictions = {q["question_id"]: a for q, a in zip(probe_set.questions, answers, strict=True)}
    scores = vqa_scores(predictions, probe_set.annotations, probe_set.questions)
    per_kind: dict[str, list[float]] = {}
    for ann in probe_set.annotations:
        kind = question_kind(ann["question_type"], ann["answer_type"])
        per_kind.setdefault(kind, []).append(scores["perQuestion"][ann["question_id"]])
    return {
        "object_precision": round(float(grounding["object_precision"]), 4),
        "object_recall": round(float(grounding["object_recall"]), 4),
        "vqa_accuracy": scores["overall"],
        "vqa_accuracy_per_answer_type": scores["perAnswerType"],
        "vqa_accuracy_per_kind": {k: round(float(np.mean(v)), 2) for k, v in sorted(per_kind.items())},
        "n_images": len(ids),
        "n_questions": len(probe_set.questions),
        "examples": [{"image_id": i, "caption": c} for i, c in list(zip(ids, captions, strict=True))[:5]],
    }


def meets_floor(metrics: dict[str, Any]) -> bool:
    """Object precision >= 0.80, VQA >= 60, and colour, shape and count each above 2x chance."""
    per_kind = metrics.get("vqa_accuracy_per_kind", {})
    return all(float(metrics[key]) >= value for key, value in FLOOR.items()) and all(
        float(per_kind.get(kind, 0.0)) > 2 * chance for kind, chance in KIND_CHANCE.items())
