"""Official metrics (VQA accuracy, COCO caption metrics), scene grounding and file scoring.

Import the submodules directly (`evaluation.vqa_accuracy`, `evaluation.captioning`, ...): the
package itself imports nothing, so code that only needs VQA accuracy or grounding does not pay
for (or require) pycocoevalcap and its Java tools. ``load_metric`` (the same metrics as
`evaluate` modules) lives in ``ptpeft_cli.evaluation.metrics``.
"""
