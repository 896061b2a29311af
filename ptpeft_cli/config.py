"""Typed schemas for every option, registered in Hydra's ConfigStore.

The yaml files under conf/ only pick values; the types, defaults and allowed choices live here,
so a typo or a wrong type fails at composition time with a message naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


def conf_dir() -> Path:
    """Installed from a wheel, the configs sit inside the package (setup.py maps conf/ there);
    in a source checkout (editable install) they are the top-level conf/, their single source."""
    package = Path(__file__).resolve().parent
    return package / "conf" if (package / "conf" / "train.yaml").is_file() else package.parent / "conf"


# Allowed values of fixed choice-like options, checked by `validate` (Hydra checks keys and
# types); the pluggable parts' choices come from their registries (`choices()`).
FIXED_CHOICES: dict[str, tuple[str, ...]] = {
    "method.stage2": ("lora", "adapter"),
    "method.prefix.mode": ("input", "kv"),
    "hardware.device": ("auto", "cpu", "cuda"),
    "hardware.precision": ("auto", "fp32", "bf16", "fp16"),
    "hardware.distributed": ("ddp", "fsdp"),
    "logger.name": ("wandb", "none"),
    "logger.mode": ("online", "offline", "disabled"),
    "trainer.scheduler": ("linear", "cosine", "constant"),
    "trainer.on_nonfinite": ("stop", "skip"),
}


def choices() -> dict[str, tuple[str, ...]]:
    """Every choice-like option and its allowed values; registries are imported here, not at
    module import, so `ptpeft --help` stays fast."""
    from ptpeft_cli.methods import METHODS
    from ptpeft_cli.models import FAMILIES
    from ptpeft_cli.tasks import TASKS
    from ptpeft_cli.tasks.sources import SOURCES

    registered = {"method.name": METHODS, "task.name": TASKS, "task.dataset.kind": SOURCES, "model.family": FAMILIES}
    return {**{key: registry.names() for key, registry in registered.items()}, **FIXED_CHOICES}


@dataclass
class ModelConfig:
    family: str = "tiny_llava"
    name_or_path: str | None = None  # None: the family's embedded/default checkpoint
    dtype: str = "auto"  # auto: bf16 on a GPU, fp32 on CPU (a family may pin fp32)
    max_length: int = 64
    # Per-task instruction text for this model (task name -> template with {question}); a task
    # missing here uses its own `task.instruction`.
    instructions: dict[str, str] = field(default_factory=dict)
    # The text around the task's instruction, `{instruction}` marking where it goes (e.g.
    # "{instruction}" for plain text, "USER: <image>\n{instruction} ASSISTANT:"); the processor
    # still places image tokens and BOS. None: the family's own format (its chat template, or the
    # plain format of a checkpoint that has none).
    prompt_format: str | None = None
    trust_remote_code: bool = False  # run a checkpoint's own Python code (only if you trust it)
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    # transformers' attention implementation (sdpa, eager, flex_attention, flash_attention_2 where
    # installed, ...); None: transformers' default for the model (sdpa where supported).
    attn_implementation: str | None = None


@dataclass
class LoraOptions:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str | None = None  # regex; None: the family's default attention targets
    mlp: bool = False


@dataclass
class AdapterOptions:
    bottleneck: int = 16
    activation: str = "gelu"


@dataclass
class PrefixOptions:
    length: int = 10
    mode: str = "input"
    encoder_hidden: int = 128
    projection: bool = True
    residual: bool = False  # with projection (input mode): prefix = embedding + MLP(embedding), MLP starts at 0


@dataclass
class StageOptions:
    """Per-stage overrides for multi-stage methods; None inherits the method/trainer value."""

    lr: float | None = None
    max_steps: int | None = None


@dataclass
class MethodConfig:
    name: str = "full"
    # The method's one name in run dirs, W&B, plots and reports (pt_peft: pt_lora / pt_adapter).
    label: str = "${.name}"
    lr: float = 1e-4
    train_vision: bool = False
    lora: LoraOptions = field(default_factory=LoraOptions)
    adapter: AdapterOptions = field(default_factory=AdapterOptions)
    prefix: PrefixOptions = field(default_factory=PrefixOptions)
    stage2: str = "lora"
    train_prefix_in_stage2: bool = True
    stage1: StageOptions = field(default_factory=StageOptions)
    stage2_options: StageOptions = field(default_factory=StageOptions)
    # Set by a `rates=` table (apply_rates): which table entry chose the options above.
    rates_from: str | None = None


@dataclass
class SplitFiles:
    """One split's files, each overriding the official layout under `task.dataset.root`."""

    questions: str | None = None
    annotations: str | None = None
    images: str | None = None  # the directory holding the split's images (e.g. .../val2014)


@dataclass
class HubColumns:
    """Which dataset column holds each field of ptpeft's rows (ids default to the row number;
    answer and question types to 'other' / 'none'; the consensus answer to the most common)."""

    image: str = "image"
    image_id: str = "image_id"
    captions: str = "captions"  # a list of reference captions, or one caption per row
    question_id: str = "question_id"
    question: str = "question"
    answers: str = "answers"  # the human answers: strings or {"answer": ...} records
    multiple_choice_answer: str = "multiple_choice_answer"
    answer_type: str = "answer_type"
    question_type: str = "question_type"


@dataclass
class HubSplits:
    """ptpeft split -> the dataset's split name."""

    train: str = "train"
    val: str = "validation"
    test: str = "test"


@dataclass
class HubFiles:
    """Local data files per ptpeft split (parquet / arrow / imagefolder builders)."""

    train: str | None = None
    val: str | None = None
    test: str | None = None


@dataclass
class HubDatasetOptions:
    """`task.dataset.kind=hf`: a `datasets` dataset and how its columns map to ptpeft's rows."""

    path: str | None = None  # hub name (e.g. lmms-lab/VQAv2) or a builder: parquet, arrow, imagefolder
    name: str | None = None  # the dataset's config name, if it has several
    data_files: HubFiles = field(default_factory=HubFiles)
    splits: HubSplits = field(default_factory=HubSplits)
    columns: HubColumns = field(default_factory=HubColumns)
    streaming: bool = False  # stream the first task.train_limit / eval_limit rows instead of downloading all


@dataclass
class DatasetConfig:
    kind: str = "synthetic"
    # synthetic: the world cache (relative to the working dir); coco_karpathy / vqav2: the directory
    # in the official layout (docs/data.md).
    root: str = "${oc.env:PTPEFT_DATA,data}"
    seed: int = 0
    image_size: int = 64
    n_pretrain: int = 0  # fine-tuning needs no pre-training images (`ptpeft pretrain` makes its own)
    n_train: int = 2000
    n_val: int = 250
    n_test: int = 250
    # Real data (docs/data.md): everything defaults to the official layout under root.
    image_root: str | None = None  # the folder holding train2014/, val2014/ (default: root)
    karpathy_json: str | None = None  # default: root/dataset_coco.json
    use_restval: bool = True  # Karpathy "restval" images join train, as the literature does
    train_on_val: bool = False  # VQAv2: train on train + val, except the `heldout` val questions
    heldout: int = 0  # VQAv2 val questions (whole images) kept out of training and evaluated on
    # Per-split overrides (task.dataset.files.val.annotations=PATH). The VQAv2 splits are listed so
    # a plain override works (another split name needs `+task.dataset.files.NAME.questions=...`), and
    # every task has them so configs of different tasks merge (retention probes). `questions` /
    # `annotations` below apply to every split, `{split}` filled in.
    files: dict[str, SplitFiles] = field(
        default_factory=lambda: {split: SplitFiles() for split in ("train", "val", "test-dev", "test")})
    questions: str | None = None
    annotations: str | None = None
    image_pattern: str | None = None  # default COCO_{data_subtype}_{image_id:012d}.jpg
    # Which question set a source with several serves (the synthetic world: `compositional`, the
    # downstream kinds, or `pretrain_kinds`, the ones the embedded model was pre-trained on).
    question_set: str = "compositional"
    hf: HubDatasetOptions = field(default_factory=HubDatasetOptions)


@dataclass
class TaskConfig:
    name: str = "captioning"
    # What the model is asked, `{question}` filled in; the model family wraps it in its format.
    instruction: str = "caption:"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train_split: str = "train"
    eval_split: str | None = None  # None: the source's (test for Karpathy and synthetic, val for VQAv2)
    train_limit: int | None = None
    eval_limit: int | None = None
    max_new_tokens: int = 24
    num_beams: int = 1
    spice: bool = False  # SPICE downloads CoreNLP at run time: off unless you have it
    meteor: bool = True  # METEOR starts a Java process (~10 s); off for quick smoke runs


@dataclass
class TrainerConfig:
    max_steps: int = 300
    batch_size: int = 32
    eval_batch_size: int = 64
    grad_accum: int = 1
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    scheduler: str = "linear"
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    checkpoint_every: int = 0  # optimizer steps between mid-stage checkpoints; 0: only at stage ends
    keep_checkpoints: int = 2  # mid-stage checkpoints kept (stage ends are always kept)
    on_nonfinite: str = "stop"  # a NaN/inf loss: stop the run (exit 1, stage and step named) or skip the step
    # Decode and process each image once and cache the tensors (datasets.map, keyed by the image
    # files and the processor's config) instead of once per batch; identical inputs either way.
    cache_images: bool = True


@dataclass
class HardwareConfig:
    device: str = "auto"
    precision: str = "auto"
    num_threads: int | None = None
    # How several processes (torchrun / accelerate launch / SLURM tasks) share the training; with
    # one process it is unused. trainer.batch_size stays the global batch, split over the ranks.
    # ddp: a replica per rank; fsdp: full fine-tuning sharded over the ranks (FSDP2).
    distributed: str = "ddp"
    # What `ptpeft plan` sizes a job for: GPUs per job (one process each) and the card
    # (training/gpus.py; None: the one visible here, else an H100). Training itself runs on
    # the processes and device it is launched with.
    gpus: int = 1
    gpu_name: str | None = None
    # Speed levers (docs/benchmarks.md); null = automatic: on CUDA, off on CPU (where fp32 runs
    # stay bit-identical to runs without them).
    fused_adamw: bool | None = None  # AdamW's fused kernel
    defer_sync: bool | None = None  # read the loss back at log steps only, not after every step (needs fused AdamW)
    compile: str | None = None  # torch.compile backend (e.g. inductor) for each decoder layer while training
    count_flops: bool | None = None  # model FLOPs of each stage's first step -> throughput/tflops, throughput/mfu


@dataclass
class LoggerConfig:
    name: str = "wandb"
    project: str = "ptpeft"
    entity: str | None = None
    mode: str | None = None  # None: offline unless WANDB_MODE or a login says otherwise
    tags: list[str] = field(default_factory=list)


@dataclass
class AnalysisConfig:
    enabled: bool = True
    max_rows: int = 4096
    center: bool = True
    layers: list[Any] = field(default_factory=lambda: [-1])
    include_projector: bool = False
    seed: int = 0


@dataclass
class RetentionConfig:
    """What the tuned model can still do that the pre-trained one could: each probe is a task
    (`task`, default the probe's name) with overrides, scored on `limit` eval examples."""

    enabled: bool = True
    limit: int = 100
    probes: dict[str, Any] = field(default_factory=dict)


@dataclass
class RatesConfig:
    """A table of method options per task and method label (`conf/rates/<name>.yaml`), e.g. the
    learning rates `make tune` chose on the val split, or a family's rates at real size. The run's
    method options are taken from `tasks[task.name][method.label]` (dotted keys under `method.`)."""

    name: str = "none"
    source: str | None = None  # where the values come from (a tuning run, a paper, a recipe)
    tasks: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainRunConfig:
    model: ModelConfig = MISSING
    method: MethodConfig = MISSING
    task: TaskConfig = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    hardware: HardwareConfig = MISSING
    logger: LoggerConfig = MISSING
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    rates: RatesConfig = field(default_factory=RatesConfig)
    output_root: str = "outputs"
    resume: str | None = None  # a run dir to continue from its last checkpoint (`ptpeft train resume=DIR`)
    # Set by `ptpeft train -m resume=SWEEP_DIR`: each job keeps its finished run or resumes its own dir.
    resume_jobs: bool = False
    stage_cache_dir: str = "${output_root}/.stage_cache"


RUN_ID_ENV = "PTPEFT_RUN_ID"
LAUNCH_TIME_ENV = "PTPEFT_LAUNCH_TIME"  # ISO time; set once per multi-process launch


def run_id() -> str:
    """A short random id in run dir names: runs started in the same second (parallel jobs on
    one machine) never share a directory. PTPEFT_RUN_ID fixes it (e.g. for all ranks of a job)."""
    import os
    import secrets

    return os.environ.get(RUN_ID_ENV) or secrets.token_hex(2)


def launch_time(pattern: str) -> str:
    """`${launch_time:%Y-%m-%d}` in run dir names: Hydra's `${now:}`, except that every rank of a
    multi-process launch gets the same time (PTPEFT_LAUNCH_TIME, agreed on before Hydra starts)."""
    import datetime as dt
    import os

    stamp = os.environ.get(LAUNCH_TIME_ENV)
    return (dt.datetime.fromisoformat(stamp) if stamp else dt.datetime.now()).strftime(pattern)


def register_configs() -> None:
    """Register the schemas so each yaml in conf/ is validated against its dataclass, and the
    `run_id` / `launch_time` resolvers the run dir names use."""
    from omegaconf import OmegaConf

    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainRunConfig)
    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", run_id, use_cache=True)
    if not OmegaConf.has_resolver("launch_time"):
        OmegaConf.register_new_resolver("launch_time", launch_time, use_cache=True)
