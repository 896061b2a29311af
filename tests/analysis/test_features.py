"""Feature collection on a tiny random LLaVA: which rows are read, and that it is repeatable."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from ptpeft_cli.analysis.features import collect_features, default_layers, sample_rows
from ptpeft_cli.errors import UserError

PREFIX = 5


def model_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers the tiny LLaVA's family would hook for `analysis.layers=[-1]`."""
    language_model = model.model.language_model
    return {"final_norm": language_model, "last_layer": language_model.layers[-1]}


def test_rows_are_the_text_positions_of_the_final_hidden_state(
    tiny_llava, batches, text_mask
) -> None:
    features = collect_features(tiny_llava, model_layers(tiny_llava), batches, text_mask, 10_000, 0)
    assert set(features) == {"final_norm", "last_layer"}
    n_text = int(sum(text_mask(batch).sum() for batch in batches))
    assert n_text == 39  # image positions and padding excluded
    for matrix in features.values():
        assert matrix.shape == (n_text, 32) and matrix.dtype == torch.float32
    # Same rows as transformers' own last hidden state (after the final norm), masked.
    with torch.no_grad():
        expected = torch.cat(
            [
                tiny_llava(**batch, output_hidden_states=True).hidden_states[-1][text_mask(batch)]
                for batch in batches
            ]
        )
    torch.testing.assert_close(features["final_norm"], expected, rtol=0, atol=0)
    assert not torch.equal(features["last_layer"], features["final_norm"])


def test_projector_rows_are_image_token_features(
    tiny_llava, batches, text_mask, image_tokens
) -> None:
    projector = tiny_llava.model.multi_modal_projector
    features = collect_features(
        tiny_llava, model_layers(tiny_llava), batches, text_mask, 10_000, 0, projector=projector
    )
    n_images = sum(batch["pixel_values"].shape[0] for batch in batches)
    assert features["projector"].shape == (n_images * image_tokens, 32)


def _prepend_to_norm_input(_module: nn.Module, args: tuple) -> tuple:
    """A fake input-mode prefix seen by a position-wise module: P extra leading positions."""
    (hidden,) = args
    prefix = torch.full((hidden.shape[0], PREFIX, hidden.shape[2]), 3.0)
    return (torch.cat([prefix, hidden], dim=1),)


def test_prepended_prefix_positions_are_skipped(tiny_llava, batches, text_mask) -> None:
    layers = model_layers(tiny_llava)
    plain = collect_features(tiny_llava, layers, batches, text_mask, 10_000, 0)
    norm = tiny_llava.model.language_model.norm
    lengths: list[int] = []
    handles = [
        norm.register_forward_pre_hook(_prepend_to_norm_input),
        norm.register_forward_hook(lambda _m, _i, out: lengths.append(out.shape[1])),
    ]
    try:
        prefixed = collect_features(tiny_llava, {"final_norm": norm}, batches, text_mask, 10_000, 0)
    finally:
        for handle in handles:
            handle.remove()
    assert lengths == [batch["input_ids"].shape[1] + PREFIX for batch in batches]
    # RMSNorm is position-wise, so reading the right positions gives exactly the plain rows.
    torch.testing.assert_close(prefixed["final_norm"], plain["final_norm"], rtol=0, atol=0)


def _prefix_embeddings(_module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple:
    """A fake input-mode prefix inside the language model: P embeddings before the inputs."""
    embeds = kwargs["inputs_embeds"]
    prefix = torch.zeros(embeds.shape[0], PREFIX, embeds.shape[2])
    kwargs["inputs_embeds"] = torch.cat([prefix, embeds], dim=1)
    mask = kwargs.get("attention_mask")
    if mask is not None:
        kwargs["attention_mask"] = torch.cat([torch.ones_like(mask[:, :PREFIX]), mask], dim=1)
    return args, kwargs


def test_prefix_inside_language_model_keeps_row_count(tiny_llava, batches, text_mask) -> None:
    plain = collect_features(tiny_llava, model_layers(tiny_llava), batches, text_mask, 10_000, 0)
    language_model = tiny_llava.model.language_model
    handle = language_model.register_forward_pre_hook(_prefix_embeddings, with_kwargs=True)
    try:
        prefixed = collect_features(
            tiny_llava, model_layers(tiny_llava), batches, text_mask, 10_000, 0
        )
    finally:
        handle.remove()
    for name in ("final_norm", "last_layer"):
        assert prefixed[name].shape == plain[name].shape
        # The prefix is attended to, so the text features move.
        assert not torch.allclose(prefixed[name], plain[name])


def test_same_inputs_give_identical_features_and_model_is_left_as_found(
    tiny_llava, batches, text_mask
) -> None:
    layers = model_layers(tiny_llava)
    # transformers installs its own output-capturing hooks; ours must all be gone afterwards.
    hooks_before = {name: len(module._forward_hooks) for name, module in layers.items()}
    tiny_llava.train()
    first = collect_features(tiny_llava, layers, batches, text_mask, 20, 7)
    assert tiny_llava.training
    second = collect_features(tiny_llava, layers, batches, text_mask, 20, 7)
    tiny_llava.eval()
    assert {name: len(module._forward_hooks) for name, module in layers.items()} == hooks_before
    for name in first:
        assert torch.equal(first[name], second[name])


def test_sampling_selects_the_seeded_rows(tiny_llava, batches, text_mask) -> None:
    layers = model_layers(tiny_llava)
    full = collect_features(tiny_llava, layers, batches, text_mask, 10_000, 0)
    sampled = collect_features(tiny_llava, layers, batches, text_mask, 10, 3)
    index = sample_rows(39, 10, 3)
    for name in full:
        assert torch.equal(sampled[name], full[name][index])


def test_sample_rows_is_deterministic_sorted_and_bounded() -> None:
    assert torch.equal(sample_rows(7, 10, 0), torch.arange(7))
    first = sample_rows(1000, 50, seed=4)
    assert torch.equal(first, sample_rows(1000, 50, seed=4))
    assert not torch.equal(first, sample_rows(1000, 50, seed=5))
    assert first.numel() == 50 and first.unique().numel() == 50
    assert torch.equal(first, first.sort().values)
    assert int(first.min()) >= 0 and int(first.max()) < 1000
    with pytest.raises(ValueError):
        sample_rows(10, 0, 0)


def test_tuple_outputs_are_unpacked() -> None:
    class TupleBlock(nn.Module):
        def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, None]:
            return hidden * 2.0, None

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.block = TupleBlock()

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.block(self.embed(input_ids))[0]

    toy = Toy()
    batch = {"input_ids": torch.tensor([[1, 2, 3]]), "attention_mask": torch.tensor([[1, 1, 0]])}
    features = collect_features(
        toy, {"block": toy.block}, [batch], lambda b: b["attention_mask"].bool(), 100, 0
    )
    torch.testing.assert_close(features["block"], toy.embed.weight[[1, 2]].detach() * 2.0)


def test_default_layers_resolves_indices_and_depths(tiny_llava, family) -> None:
    decoder = tiny_llava.model.language_model.layers
    assert default_layers(family, tiny_llava, [-1]) == model_layers(tiny_llava)
    assert model_layers(tiny_llava)["last_layer"] is decoder[1]
    layers = default_layers(family, tiny_llava, [0, 0.5, -1, 0.0])
    assert list(layers) == ["final_norm", "layer_0", "last_layer"]
    assert layers["layer_0"] is decoder[0]
    for bad in (2, -3, 1.5, "middle", True):
        with pytest.raises(UserError):
            default_layers(family, tiny_llava, [bad])
