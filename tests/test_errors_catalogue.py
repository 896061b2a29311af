"""docs/errors.md, tested: every bad input in the catalogue ends with one line on stderr naming the
problem, exit code 2, no traceback, and no run directory (nothing half-written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from official_tree import write_official_tree
from transformers import InstructBlipConfig, PaliGemmaConfig

from ptpeft_cli.cli import main

TINY = ["trainer.max_steps=1", "trainer.batch_size=2", "task.dataset.n_train=4", "task.dataset.n_val=2",
        "task.dataset.n_test=2", "logger=none", "analysis.enabled=false", "retention.enabled=false", "hardware=cpu"]
SHIPPED = Path(__file__).resolve().parent.parent / "ptpeft_cli" / "models" / "checkpoints" / "tiny_llava"

# (id in docs/errors.md, command line with {tmp} for the test's directory, expected part of the message)
CATALOGUE: list[tuple[str, list[str], str]] = [
    ("unknown-command", ["trian"], "unknown command 'trian'; choose one of: train, eval"),
    ("unknown-method", ["train", "method=lorra"], "Could not find 'method/lorra'"),
    ("unknown-key", ["train", "trainer.foo=1"], "Key 'foo' not in 'TrainerConfig'"),
    ("wrong-type", ["train", "trainer.max_steps=abc"], "could not be converted to Integer"),
    ("negative-lr", ["train", "method.lr=-1"], "method.lr=-1.0 must be > 0"),
    ("zero-batch", ["train", "trainer.batch_size=0"], "trainer.batch_size=0 must be > 0"),
    ("bad-stage2", ["train", "method.stage2=bitfit"], "method.stage2='bitfit' is not allowed; choose one of: lora, adapter"),
    ("bad-prefix-mode", ["train", "method.prefix.mode=deep"], "choose one of: input, kv"),
    ("unknown-hardware", ["train", "hardware=tpu"], "Available options in 'hardware'"),
    ("bad-logger-mode", ["train", "logger.mode=sideways"], "logger.mode='sideways' is not allowed; choose one of: online, offline, disabled"),
    ("unknown-task-name", ["train", "task.name=ocr"], "task.name='ocr' is not allowed; choose one of: captioning, vqa"),
    ("unknown-dataset-kind", ["train", "task.dataset.kind=parquet"], "task.dataset.kind='parquet' is not allowed"),
    ("unknown-family", ["train", "model.family=gpt5"], "model.family='gpt5' is not allowed"),
    ("warmup-ratio", ["train", "trainer.warmup_ratio=1.5"], "trainer.warmup_ratio=1.5 must be in [0, 1)"),
    ("bad-nonfinite-policy", ["train", "trainer.on_nonfinite=ignore"], "choose one of: stop, skip"),
    ("retention-limit", ["train", "retention.limit=0"], "retention.limit=0 must be > 0"),
    ("bad-sweep-value", ["train", "-m", "method=lora,bogus"], "Could not find 'method/bogus'"),
    ("cuda-without-gpu", ["train", "hardware=gpu", *TINY[:-1]], "no CUDA device is visible"),
    ("bf16-on-cpu", ["train", "hardware.precision=bf16", "hardware.device=cpu"], "needs CUDA here"),
    ("vqav2-without-files", ["train", "task=vqa", "task.dataset.kind=vqav2", "task.dataset.root={tmp}", *TINY],
     "VQAv2 val questions file not found: {tmp}/v2_OpenEnded_mscoco_val2014_questions.json (from "
     "task.dataset.root={tmp}); fetch it with: python scripts/fetch_data.py vqav2 --root {tmp}"),
    ("vqav2-missing-file", ["train", "task=vqa", "task.dataset.kind=vqav2", "task.dataset.files.val.questions={tmp}/q.json",
                            "task.dataset.image_root={tmp}", *TINY],
     "VQAv2 val questions file not found: {tmp}/q.json (from task.dataset.files.val.questions={tmp}/q.json)"),
    ("karpathy-missing-image", ["train", "task.dataset.kind=coco_karpathy", "task.dataset.root={tmp}/official/coco", *TINY],
     "image not found: {tmp}/official/coco/val2014/COCO_val2014_000000318219.jpg (1 of 4 images of this split are "
     "missing; image_root={tmp}/official/coco + filepath/filename of dataset_coco.json); fetch it with: "
     "python scripts/fetch_data.py coco --root {tmp}/official/coco"),
    ("vqav2-unknown-split", ["train", "task=vqa", "task.dataset.kind=vqav2", "task.dataset.root={tmp}/official/vqa",
                             "task.dataset.image_root={tmp}/official/coco", "task.eval_split=minival", *TINY], "no split 'minival'; choose one of: train, val, test-dev, test"),
    ("vqav2-train-on-val-without-heldout", ["train", "task=vqa", "task.dataset.kind=vqav2",
                                            "task.dataset.root={tmp}/official/vqa", "task.dataset.image_root={tmp}/official/coco",
                                            "task.dataset.train_on_val=true", *TINY], "set task.dataset.heldout=N"),
    ("task-dataset-mismatch", ["train", "task=captioning", "task.dataset.kind=vqav2", *TINY],
     "task=captioning needs a dataset with captions; task.dataset.kind=vqav2 provides questions"),
    ("karpathy-not-json", ["train", "task.dataset.kind=coco_karpathy", "task.dataset.karpathy_json={tmp}/broken.json",
                           "task.dataset.image_root={tmp}", *TINY], "is not valid JSON"),
    ("unknown-split", ["train", "task.train_split=bogus", *TINY], "split 'bogus' is not in"),
    ("unknown-question-set", ["train", "task=vqa", "task.dataset.question_set=bogus", *TINY],
     "unknown VQA question kind 'bogus'"),
    ("question-set-on-real-data", ["train", "task=vqa", "task.dataset.kind=vqav2", "task.dataset.question_set=pretrain_kinds",
                                   "task.dataset.questions='{world}/vqa/v2_OpenEnded_mscoco_{{split}}_questions.json'",
                                   "task.dataset.annotations='{world}/vqa/v2_mscoco_{{split}}_annotations.json'",
                                   "task.dataset.image_root={world}", *TINY], "has one question set"),
    ("unwritable-data-root", ["train", "task.dataset.root=/proc/ptpeft", *TINY], "cannot hold the synthetic world"),
    ("missing-checkpoint", ["train", "model.name_or_path={tmp}/nowhere", *TINY], "cannot load model.name_or_path={tmp}/nowhere"),
    ("truncated-checkpoint", ["train", "model.name_or_path={tmp}/truncated", *TINY], "cannot load model.name_or_path={tmp}/truncated"),
    ("prefix-kv-with-checkpointing", ["train", "method=prefix", "method.prefix.mode=kv", "model.gradient_checkpointing=true",
                                      *TINY], "method.prefix.mode=kv does not work with model.gradient_checkpointing=true"),
    ("bad-prompt-format", ["train", "model.prompt_format='Q: {{question}} A:'", *TINY],
     "model.prompt_format='Q: {{question}} A:' must contain {{instruction}} exactly once and no other {{field}}"),
    ("no-chat-template", ["train", "model=hf", "model.name_or_path={shipped}", *TINY],
     "model family hf: the processor of this checkpoint has no chat template; set model.prompt_format"),
    ("hf-needs-own-family", ["train", "model=hf", "model.name_or_path={tmp}/paligemma", *TINY],
     "model family hf: a checkpoint of model_type paligemma needs model=paligemma"),
    ("instructblip-encoder-decoder", ["train", "model=instructblip", "model.name_or_path={tmp}/flant5", *TINY],
     "{tmp}/flant5 has an encoder-decoder one (t5, Flan-T5), which is not supported"),
    ("lora-targets-match-nothing", ["train", "method=lora", "method.lora.target_modules=.*nothing_here", *TINY],
     "matches no Linear module; Linear modules in this model: lm_head, model.language_model.layers.N.mlp.down_proj"),
    ("lora-targets-bad-regex", ["train", "method=lora", "method.lora.target_modules='(q_proj'", *TINY], "not a valid regex"),
    ("train-split-smaller-than-a-batch", ["train", "task=vqa", "task.train_limit=8", "trainer.batch_size=32",
                                          *[a for a in TINY if not a.startswith("trainer.batch_size=")]],
     "the train split 'train' has 8 example(s), fewer than one batch (trainer.batch_size=32, the global batch of "
     "all processes): lower trainer.batch_size to at most 8 or train on more examples (task.train_limit)"),
    ("bad-distributed", ["train", "hardware.distributed=deepspeed"], "hardware.distributed='deepspeed' is not allowed; choose one of: ddp, fsdp"),
    ("unknown-rates", ["train", "rates=tunned"], "Could not find 'rates/tunned'"),
    ("rates-missing-entry", ["train", "hydra.searchpath=[file://{tmp}/conf]", "rates=demo", "method=adapter"],
     "rates=demo has no entry for task captioning / method adapter; it has: captioning/lora"),
    ("rates-and-command-line", ["train", "hydra.searchpath=[file://{tmp}/conf]", "rates=demo", "method=lora",
                                "method.lr=0.1"], "method.lr is set both on the command line and by rates=demo"),
    ("defer-sync-without-fused-adamw", ["train", "hardware.defer_sync=true", "hardware.fused_adamw=false", *TINY],
     "hardware.defer_sync=true needs fused AdamW"),
    ("unknown-compile-backend", ["train", "hardware.compile=turbo", *TINY],
     "hardware.compile='turbo' is not a torch.compile backend here; choose one of: "),
    ("unknown-attention", ["train", "model.attn_implementation=magic", *TINY],
     "model.attn_implementation='magic' cannot be used with LlavaForConditionalGeneration here"),
    ("resume-sweep-not-a-sweep", ["train", "-m", "resume={tmp}"], "needs a sweep dir (one with multirun.yaml"),
    ("resume-sweep-with-overrides", ["train", "-m", "resume={tmp}/sweep", "method.lr=1"],
     "a sweep resumes with its own command line; drop method.lr=1"),
    ("score-vqa-without-questions", ["score", "task=vqa", "predictions={tmp}/p.json", "annotations={tmp}/a.json"],
     "ptpeft score task=vqa needs questions="),
    ("score-missing-predictions", ["score", "task=captioning", "predictions={tmp}/none.json", "annotations={tmp}/a.json"],
     "predictions file not found"),
    ("score-predictions-not-a-list", ["score", "task=captioning", "predictions={tmp}/dict.json",
                                      "annotations={tmp}/dict.json"], "must hold a list of objects"),
    ("score-unknown-task", ["score", "task=ocr", "predictions={tmp}/p.json", "annotations={tmp}/a.json"],
     "task.name='ocr' is not allowed"),
    ("eval-not-a-run", ["eval", "run_dir={tmp}"], "is not a ptpeft run dir"),
    ("analyze-nothing", ["analyze"], "ptpeft analyze needs run_dir=PATH"),
    ("analyze-unanalysed", ["analyze", "run_dir={tmp}"], "holds no representation.json"),
    ("report-no-runs", ["report", "runs={tmp}"], "no ptpeft run dirs under"),
    ("plan-unknown-experiment", ["plan", "experiment=real_llava"], "Could not find 'experiment/real_llava'"),
    ("plan-unknown-gpu", ["plan", "experiment=real_blip2_opt_vqa", "hardware.gpu_name=V100"],
     "unknown hardware.gpu_name='V100'; known: H100-NVL, H100-PCIe, H100-SXM, H200-NVL, H200, GH200"),
    ("plan-gpu-typo", ["plan", "experiment=real_blip2_opt_vqa", "hardware.gpu_name=h100-pci"],
     "unknown hardware.gpu_name='h100-pci': 'pci' is no part of an H100-SXM name (its own words, a form factor, memory type or size); known: "),
    ("plan-no-shapes", ["plan", "model=llava15", "model.name_or_path={tmp}/nowhere"],
     "ptpeft plan needs the shapes of model.name_or_path={tmp}/nowhere: it is neither a checkpoint with a shipped config"),
    ("plan-batch-split", ["plan", "experiment=real_blip2_opt_vqa", "hardware.gpus=3"],
     "trainer.batch_size=16 cannot be split over hardware.gpus=3; use a multiple of 3"),
    ("plan-bench-missing", ["plan", "bench={tmp}/gpu.json", "model=llava15"], "bench={tmp}/gpu.json: no such file"),
    ("plan-text-tokens", ["plan", "text_tokens=0", "model=llava15"], "text_tokens=0 must be > 0"),
    ("tune-unknown-label", ["tune", "labels=[lora,mystery]"],
     "tune: labels=mystery has no grid; grid has: full, lora, adapter, prefix, pt_lora, pt_adapter"),
    ("tune-stage1-not-tuned", ["tune", "labels=[pt_lora]"],
     "tune: pt_lora takes stage1.lr, prefix.length from prefix, which is not tuned before it"),
    ("tune-empty-grid", ["tune", "grid.lora.lr=[]"], "tune: grid.lora.lr is an empty list"),
    ("tune-parallel", ["tune", "parallel=0"], "tune: parallel=0 must be >= 1"),
    ("tune-rates-dir-name", ["tune", "rates_dir={tmp}/mine"], "tune: rates_dir={tmp}/mine must be a folder named 'rates'"),
    ("tune-other-sweep", ["tune", "out={tmp}/tune", "tasks=[vqa]", "labels=[lora]"],
     "tune: {tmp}/tune/vqa/lora holds a sweep with other overrides (method.lr=9 instead of "),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bad_inputs")
    (tmp / "broken.json").write_text("{not json")
    (tmp / "dict.json").write_text(json.dumps({"a": 1}))
    (tmp / "sweep").mkdir()
    (tmp / "sweep" / "multirun.yaml").write_text("hydra: {overrides: {task: [], hydra: []}}\n")
    (tmp / "tune" / "vqa" / "lora").mkdir(parents=True)  # a tuning sweep of another grid
    (tmp / "tune" / "vqa" / "lora" / "multirun.yaml").write_text(
        "hydra: {overrides: {task: [method=lora, method.lr=9], hydra: []}}\n")
    (tmp / "conf" / "rates").mkdir(parents=True)
    (tmp / "conf" / "rates" / "demo.yaml").write_text("name: demo\ntasks: {captioning: {lora: {lr: 0.001}}}\n")
    tree = write_official_tree(tmp / "official")
    tree.image("val2014", tree.karpathy_ids("test")[-1]).unlink()
    shutil.copytree(SHIPPED, tmp / "truncated")
    weights = tmp / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 100_000])
    InstructBlipConfig(text_config={"model_type": "t5"}, use_decoder_only_language_model=False).save_pretrained(
        tmp / "flant5")
    PaliGemmaConfig().save_pretrained(tmp / "paligemma")
    return tmp


@pytest.mark.parametrize("case", CATALOGUE, ids=[case[0] for case in CATALOGUE])
def test_bad_input_gets_one_line_exit_2_and_nothing_written(case: tuple[str, list[str], str], files: Path,
                                                           small_world, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    _, args, expected = case
    fill = {"tmp": str(files), "world": str(small_world.root), "shipped": str(SHIPPED)}
    workdir = files / "work"
    workdir.mkdir(exist_ok=True)
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("PTPEFT_DATA", str(small_world.root.parent))
    with pytest.raises(SystemExit) as exit_info:
        main([arg.format(**fill) for arg in args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]  # progress bars may precede it
    assert errors == [lines[-1]] and lines[-1].startswith("ptpeft: error: "), err
    assert expected.format(**fill) in lines[-1]
    assert "Traceback" not in err
    assert not list((workdir / "outputs").glob("*/*")), "a run dir was left behind"


def test_every_catalogued_input_is_documented() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "errors.md").read_text()
    missing = [case_id for case_id, _, _ in CATALOGUE if f"`{case_id}`" not in doc]
    assert not missing, f"docs/errors.md lacks {missing}"
