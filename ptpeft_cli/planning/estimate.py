"""Memory and speed of one method stage on one card: arithmetic on shapes, corrected by measurement.

Memory per GPU (bytes) = static + activations + logits, for bf16 weights:
- static: planning/sizes.py (weights, gradients, AdamW state); DDP on several GPUs adds its gradient
  buckets (one more gradient per trained parameter); FSDP divides the static part by the GPUs and
  holds two gathered decoder layers.
- activations of the decoder stack: 34 x seq x batch x hidden bytes per layer (Korthikanti et al.
  2022, "Reducing Activation Recomputation in Large Transformer Models", eq. 1 without the
  attention-score term, which SDPA / flash attention do not keep); LoRA adds the input it keeps
  per wrapped Linear (a bf16 copy and a dropout mask, 3 bytes x in_features per token). With
  gradient checkpointing: each layer's input (2 x seq x batch x hidden) plus one layer recomputed.
- logits: seq x batch x vocab x 14 bytes (bf16 logits, the fp32 copy the loss makes, its
  log-softmax and the gradient), all positions (the model computes logits everywhere).
A job fits when that is at most 90% of the card's memory (the rest: CUDA context, the caching
allocator, fragmentation). Where `make bench-gpu` measured the peak of the same checkpoint, method,
stage and checkpointing, the estimate is scaled by measured / estimated at the measured setting.

Speed: training FLOPs per sample = vision forward (2 x image params x patches) + decoder forward
(2 x token params x seq) + the backward through the decoder (the same again: every method here
needs gradients at its first layer) + weight gradients (2 x trained params x seq, i.e. full
fine-tuning's third share) + a second decoder forward with gradient checkpointing. A measured
samples/s of the same checkpoint, method, stage, checkpointing and card is used as it is; otherwise
the closest measured row (same kind of training first: full vs frozen base; then checkpoint,
method, stage, checkpointing, card) is scaled by FLOPs per sample and by the cards' bf16 peaks,
and the result is marked extrapolated. Evaluation (generation) and analysis are counted as forward
passes at the training anchor's achieved FLOP rate (decoding is slower than that: a lower bound)
unless `eval_examples_per_s` was measured for the checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ptpeft_cli.planning.measured import Measured
from ptpeft_cli.planning.shapes import Shapes
from ptpeft_cli.planning.sizes import Footprint
from ptpeft_cli.training.gpus import Gpu

GIB = 1024**3
USABLE = 0.9  # share of a card's memory a job may plan for
LAYER_BYTES = 34  # x seq x batch x hidden per decoder layer
LORA_KEPT_BYTES = 3  # x in_features per token per LoRA-wrapped Linear
LOGIT_BYTES = 14  # x seq x batch x vocab
FULL_SHARE = 0.1  # a stage training more than this share of the parameters trains the base weights


@dataclass(frozen=True)
class Stage:
    """One stage of one job as the estimates see it."""

    shapes: Shapes
    footprint: Footprint
    method: str  # label (none, full, lora, ..., pt_lora)
    stage: str | None  # stage name of a multi-stage method
    seq: int  # sequence positions per sample
    micro: int  # samples per GPU per forward
    checkpointing: bool
    gpus: int
    fsdp: bool

    @property
    def full(self) -> bool:
        return self.footprint.trainable > FULL_SHARE * self.footprint.total


@dataclass(frozen=True)
class Estimate:
    value: float
    source: str  # measured | scaled | extrapolated | estimated | calibrated
    note: str = ""


def memory_bytes(stage: Stage) -> float:
    """Peak bytes per GPU from the arithmetic alone."""
    shapes, fp = stage.shapes, stage.footprint
    tokens = stage.seq * stage.micro
    static = float(fp.static_bytes)
    if stage.gpus > 1 and stage.fsdp and stage.full:
        static = static / stage.gpus + 2 * fp.weight_bytes * shapes.token_params / shapes.layers  # two gathered layers
    elif stage.gpus > 1:
        static += fp.gradient_bytes  # DDP gradient buckets
    layer = LAYER_BYTES * tokens * shapes.hidden
    lora = LORA_KEPT_BYTES * fp.lora_inputs * tokens
    if stage.checkpointing:
        kept = shapes.layers * 2 * tokens * shapes.hidden + layer + lora / shapes.layers
    else:
        kept = shapes.layers * layer + lora
    return static + kept + LOGIT_BYTES * tokens * shapes.vocab


def memory(stage: Stage, rows: list[Measured], at: Callable[[Stage, int, int], Stage]) -> Estimate:
    """Peak GiB per GPU; calibrated by a measured peak of the same setting where there is one.
    `at(stage, batch, seq)` is the same stage at another micro-batch and sequence length."""
    estimate = memory_bytes(stage) / GIB
    for row in rows:
        if _same(row, stage) and row.get("gradient_checkpointing") == stage.checkpointing and row.get("peak_mem_gib"):
            there = at(stage, int(row.get("batch_size") or stage.micro), int(row.get("seq_len") or stage.seq))
            factor = float(row.get("peak_mem_gib")) / (memory_bytes(there) / GIB)
            return Estimate(estimate * factor, "calibrated", f"x{factor:.2f} from {row.describe()}")
    return Estimate(estimate, "estimated")


def fits(gib: float, gpu: Gpu) -> bool:
    return gib <= USABLE * gpu.memory_gib


def train_flops(shapes: Shapes, fp: Footprint, seq: int, checkpointing: bool) -> float:
    decoder = 2.0 * shapes.token_params * seq
    return (2.0 * shapes.image_params * shapes.patches + decoder * (3 if checkpointing else 2)
            + 2.0 * fp.trainable * seq)


def forward_flops(shapes: Shapes, seq: int) -> float:
    return 2.0 * shapes.image_params * shapes.patches + 2.0 * shapes.token_params * seq


def _same(row: Measured, stage: Stage) -> bool:
    return (row.get("checkpoint") == stage.shapes.checkpoint and row.get("method") == stage.method
            and (row.get("stage") or None) == stage.stage)


def anchor(stage: Stage, gpu: Gpu, rows: list[Measured], is_full: Callable[[Measured], bool]) -> Measured | None:
    """The measured row closest to `stage` on `gpu` (rows with samples/s only; earlier rows win ties)."""
    usable = [r for r in rows if r.get("samples_per_s") and r.peak_tflops]

    def score(row: Measured) -> tuple[bool, ...]:
        return (is_full(row) == stage.full, row.get("checkpoint") == stage.shapes.checkpoint,
                row.get("method") == stage.method, (row.get("stage") or None) == stage.stage,
                row.get("gradient_checkpointing") == stage.checkpointing, row.card == gpu.name)

    return max(usable, key=score, default=None)


def train_rate(stage: Stage, gpu: Gpu, row: Measured | None, row_flops: float) -> Estimate | None:
    """Samples/s per GPU: the anchor row's, scaled by FLOPs per sample and by the cards' peaks."""
    if row is None:
        return None
    flops = train_flops(stage.shapes, stage.footprint, stage.seq, stage.checkpointing)
    value = float(row.get("samples_per_s")) * row_flops / flops * gpu.bf16_tflops / float(row.peak_tflops)
    exact = _same(row, stage) and row.get("gradient_checkpointing") == stage.checkpointing
    if exact and row.card == gpu.name:
        return Estimate(value, "measured", row.describe())
    if exact:
        return Estimate(value, "scaled", f"{row.describe()}, x{gpu.bf16_tflops / row.peak_tflops:.2f} by bf16 peak")
    return Estimate(value, "extrapolated", f"from {row.describe()} by FLOPs and bf16 peak")


def eval_rate(shapes: Shapes, seq: int, gpu: Gpu, rows: list[Measured], achieved_flops: float | None
              ) -> Estimate | None:
    """Examples/s per GPU of generation / teacher-forced analysis (`seq` positions each)."""
    for row in rows:
        if row.get("checkpoint") == shapes.checkpoint and row.get("eval_examples_per_s") and row.peak_tflops:
            value = float(row.get("eval_examples_per_s")) * gpu.bf16_tflops / float(row.peak_tflops)
            return Estimate(value, "scaled" if row.card != gpu.name else "measured", row.describe())
    if achieved_flops is None:
        return None
    return Estimate(achieved_flops / forward_flops(shapes, seq), "extrapolated",
                    "forward passes at the training anchor's FLOP rate")
