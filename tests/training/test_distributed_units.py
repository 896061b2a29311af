"""The pieces of data parallelism that one process can check: token-weighted accumulation, how eval
batches are dealt to ranks, per-rank RNG in checkpoints, and the launch-wide run-dir time."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch
from torch import nn

from ptpeft_cli.config import launch_time
from ptpeft_cli.errors import UserError
from ptpeft_cli.training import checkpoint as ckpt
from ptpeft_cli.training.batches import train_loader
from ptpeft_cli.training.distributed import Distributed
from ptpeft_cli.training.hardware import resolve_hardware
from ptpeft_cli.training.loop import build_optimizer, target_tokens, train_step


class TinyLM(nn.Module):
    """A causal LM whose loss is, like transformers', the mean over shifted labels != -100."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.head = nn.Embedding(11, 8), nn.Linear(8, 11)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> types.SimpleNamespace:
        logits = self.head(self.embed(input_ids))
        loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
        return types.SimpleNamespace(loss=loss)


def _batch(lengths: list[int]) -> dict[str, torch.Tensor]:
    ids = torch.arange(len(lengths) * 6).remainder(11).reshape(len(lengths), 6)
    labels = ids.clone()
    for row, length in enumerate(lengths):
        labels[row, length:] = -100
    return {"input_ids": ids, "labels": labels}


def _step(micro: list[dict[str, torch.Tensor]]) -> tuple[float, torch.Tensor]:
    model = TinyLM()
    optimizer, scheduler = build_optimizer(model, 0.1, 0.0, 1, 0, "constant")
    loss = train_step(model, micro, optimizer, scheduler, resolve_hardware("cpu", "fp32"), max_grad_norm=0)
    return loss, model.head.weight.detach().clone()


def test_accumulated_micro_batches_step_like_one_batch_of_their_tokens() -> None:
    short, long = _batch([2, 3]), _batch([6, 6])  # 3 and 10 target tokens: a plain mean of means would differ
    assert target_tokens(short) == 3 and target_tokens(long) == 10
    whole = {k: torch.cat([short[k], long[k]]) for k in short}
    loss_split, weights_split = _step([short, long])
    loss_whole, weights_whole = _step([whole])
    assert loss_split == pytest.approx(loss_whole, abs=1e-6)
    assert torch.allclose(weights_split, weights_whole, atol=1e-6)


def test_one_micro_batch_on_one_process_is_the_models_own_loss() -> None:
    batch = _batch([2, 5])
    loss, _ = _step([batch])
    assert loss == float(TinyLM()(**batch).loss.detach())  # weight exactly 1: single runs train as before


def _ranks(world: int) -> list[Distributed]:
    return [Distributed(types.SimpleNamespace(num_processes=world, process_index=rank)) for rank in range(world)]


def test_eval_batches_are_dealt_whole_and_round_robin() -> None:
    shards = [dist.shard_batches(23, 4) for dist in _ranks(3)]
    assert shards[0] == [0, 1, 2, 3, 12, 13, 14, 15]
    assert shards[2] == [8, 9, 10, 11, 20, 21, 22]
    assert sorted(i for shard in shards for i in shard) == list(range(23))
    assert Distributed().shard_batches(23, 4) is None  # one process: the whole split


def test_the_global_batch_must_split_evenly_over_ranks() -> None:
    data = types.SimpleNamespace(train=list(range(10)), images=None)
    loaded = types.SimpleNamespace(family=None)
    trainer = types.SimpleNamespace(seed=0, batch_size=5, num_workers=0)
    with pytest.raises(UserError, match=r"trainer.batch_size=5 cannot be split over 2 processes"):
        train_loader(loaded, types.SimpleNamespace(), data, trainer, dist=_ranks(2)[1])


def test_checkpoints_hold_each_ranks_rng_and_refuse_another_world_size(tmp_path: Path) -> None:
    states = [{"python": None, "seed": torch.tensor([rank])} for rank in range(2)]
    path = ckpt.save(tmp_path, stage=0, step=1, global_step=1, trainable={"w": torch.zeros(1)},
                     trainer_state={"rng": states}, stage_done=False)
    saved = ckpt.verify(path)
    assert int(ckpt.trainer_state(saved, rank=1, world_size=2)["rng"]["seed"]) == 1
    with pytest.raises(UserError, match="was written by 2 process\\(es\\); resume it on as many \\(this launch has 1\\)"):
        ckpt.trainer_state(saved, rank=0, world_size=1)


def test_launch_time_is_the_agreed_one_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTPEFT_LAUNCH_TIME", "2026-01-02T03:04:05")
    assert launch_time("%Y-%m-%d_%H-%M-%S") == "2026-01-02_03-04-05"
    monkeypatch.delenv("PTPEFT_LAUNCH_TIME")
    assert launch_time("%Y") >= "2026"


def test_fsdp_is_for_full_fine_tuning_without_mid_stage_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")  # refused before any process group is made
    with pytest.raises(UserError, match="hardware.distributed=fsdp shards full fine-tuning .method=full.; method=lora"):
        Distributed.from_env(torch.device("cpu"), "fsdp", "lora")
    with pytest.raises(UserError, match="mid-stage checkpoints are written under ddp only so far"):
        Distributed.from_env(torch.device("cpu"), "fsdp", "full", checkpoint_every=10)
