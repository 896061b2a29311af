"""The text half of `HFFamily` (models/hf.py): a prompt around the task's instruction, target
tokens as generation produces them, batches with labels masked to the target, generated ids back to
text. A mixin so that families override any step by name, as they do the loading and structure
methods of `HFFamily`."""

from __future__ import annotations

from typing import Any

import torch

from ptpeft_cli.errors import UserError
from ptpeft_cli.models.base import LoadedModel

IGNORE_INDEX = -100


def pad_sequences(sequences: list[list[int]], value: int, left: bool) -> torch.Tensor:
    """Pad int sequences to the longest; `left` for generation batches."""
    width = max(len(seq) for seq in sequences)
    rows = [
        ([value] * (width - len(s)) + s) if left else (s + [value] * (width - len(s)))
        for s in sequences
    ]
    return torch.tensor(rows, dtype=torch.long)


class HFText:
    """Prompts, target tokens, batches and generation for `HFFamily`; its subclasses change the
    class attributes and override the methods below where their processor differs."""

    name: str
    processor: Any  # set by HFFamily.load(); the chat template lives there
    prompt_format: str | None  # `model.prompt_format`, set by HFFamily.load()
    # None: render the processor's chat template around `{instruction}`.
    prompt_template: str | None = None
    prepend_bos = False  # True where the tokenizer does not add BOS itself
    target_separator = " "  # between prompt and target, unless the prompt ends in whitespace

    def prompt(self, instruction: str) -> str:
        """`model.prompt_format`, else the family's `prompt_template`, else the processor's chat
        template (one image, one user turn) around the instruction."""
        template = self.prompt_format if self.prompt_format is not None else self.prompt_template
        if template is not None:
            return template.format(instruction=instruction)
        if self.processor is None:
            raise RuntimeError(f"family {self.name}: load() the model before building prompts")
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}
        ]
        if not getattr(self.processor, "chat_template", None):
            raise UserError(
                f"model family {self.name}: the processor of this checkpoint has no chat template; "
                "set model.prompt_format (e.g. model.prompt_format='{instruction}' for plain text) "
                "or use the checkpoint's family (model=paligemma, model=instructblip, ...)"
            )
        text = self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        tokenizer = self.processor.tokenizer
        bos = tokenizer.bos_token
        adds_bos = bos is not None and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]
        return text[len(bos) :] if adds_bos and text.startswith(bos) else text  # not twice

    def separator(self, prompt: str) -> str:
        return "" if not prompt or prompt[-1].isspace() else self.target_separator

    def end_id(self, tokenizer: Any) -> int:
        """Token that ends a target (and generation)."""
        return int(tokenizer.eos_token_id)

    def target_ids(
        self, tokenizer: Any, prompts: list[str], targets: list[str], max_length: int
    ) -> list[list[int]]:
        """Target tokens as the tokenizer splits them *after the prompt* (so training sees the
        tokens generation produces), capped at `max_length` - 1, plus the end token."""
        joint = tokenizer(
            [p + self.separator(p) + t for p, t in zip(prompts, targets, strict=True)],
            add_special_tokens=False,
        )["input_ids"]
        alone = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        out = []
        for ids, prefix, prompt, target in zip(joint, alone, prompts, targets, strict=True):
            if ids[: len(prefix)] == prefix:
                ids = ids[len(prefix) :]
            else:  # the tokenizer merged across the boundary: tokenise the target alone
                ids = tokenizer(self.separator(prompt) + target, add_special_tokens=False)[
                    "input_ids"
                ]
            out.append(ids[: max(1, max_length - 1)] + [self.end_id(tokenizer)])
        return out

    def encode(
        self,
        loaded: LoadedModel,
        images: list[Any] | None,
        prompts: list[str],
        targets: list[str] | None = None,
        image_inputs: dict[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Prompt rows (`prompt_rows`, or `cached_prompt_rows` on cached `image_inputs` for a
        family that implements them), then per row the target tokens and `labels` (-100 on
        prompt, image and padding positions); right-padded with targets, left-padded without."""
        tokenizer = loaded.processor.tokenizer
        if image_inputs is None:
            out, rows = self.prompt_rows(loaded, images, prompts)
        else:
            out, rows = self.cached_prompt_rows(loaded, image_inputs, prompts)
        if targets is None:
            suffix = self.generation_suffix(tokenizer)
            rows = {
                k: [r + (suffix if k == "input_ids" else [0] * len(suffix)) for r in v]
                for k, v in rows.items()
            }
            return self._pack(out, rows, tokenizer.pad_token_id, left=True)
        extra = self.target_ids(
            tokenizer, prompts, targets, int(loaded.extras.get("max_length", 64))
        )
        labels = [
            [IGNORE_INDEX] * len(p) + t for p, t in zip(rows["input_ids"], extra, strict=True)
        ]
        rows = {
            k: [
                r + (t if k == "input_ids" else [0] * len(t)) for r, t in zip(v, extra, strict=True)
            ]
            for k, v in rows.items()
        }
        out["labels"] = pad_sequences(labels, IGNORE_INDEX, left=False)
        return self._pack(out, rows, tokenizer.pad_token_id, left=False)

    def prompt_rows(
        self, loaded: LoadedModel, images: list[Any], prompts: list[str]
    ) -> tuple[dict[str, Any], dict[str, list[list[int]]]]:
        """(per-image inputs, unpadded per-token rows) for the prompts. The processor expands
        image placeholders; per-token extras (e.g. Qwen2-VL's `mm_token_type_ids`) become rows
        like `input_ids` (extended with 0 over targets), per-image ones pass through."""
        processor = loaded.processor
        tokenizer = processor.tokenizer
        texts = [(tokenizer.bos_token if self.prepend_bos else "") + p for p in prompts]
        tokenizer.padding_side = "right"
        batch = processor(images=images, text=texts, padding=True, return_tensors="pt")
        mask = batch["attention_mask"].bool()
        shape = batch["input_ids"].shape
        per_token = [
            k
            for k, v in batch.items()
            if k not in ("input_ids", "attention_mask") and torch.is_tensor(v) and v.shape == shape
        ]
        out = {
            k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", *per_token)
        }
        rows = {
            k: [r[m].tolist() for r, m in zip(batch[k], mask, strict=True)]
            for k in ("input_ids", *per_token)
        }
        return out, rows

    def cached_prompt_rows(
        self, loaded: LoadedModel, image_inputs: dict[str, torch.Tensor], prompts: list[str]
    ) -> tuple[dict[str, Any], dict[str, list[list[int]]]]:
        """`prompt_rows` on images processed earlier by `image_inputs`: the processor's own
        placeholder expansion (`replace_image_token`) on the cached tensors, then the tokenizer,
        each distinct prompt once. Valid for processors whose `__call__` is image processing +
        that expansion + tokenising (LLaVA's); a family enables it by implementing `image_inputs`."""
        processor = loaded.processor
        tokenizer = processor.tokenizer
        texts = [(tokenizer.bos_token if self.prepend_bos else "") + p for p in prompts]
        replacements = [processor.replace_image_token(image_inputs, i) for i in range(len(texts))]
        texts, _ = processor.get_text_with_replacements(texts, replacements)
        distinct = list(dict.fromkeys(texts))  # a captioning batch has one prompt
        ids_of = dict(zip(distinct, tokenizer(distinct)["input_ids"], strict=True))
        return dict(image_inputs), {"input_ids": [list(ids_of[text]) for text in texts]}

    def generation_suffix(self, tokenizer: Any) -> list[int]:
        """Tokens after a generation prompt that the model's `generate` strips again (BLIP)."""
        return []

    @staticmethod
    def _pack(
        out: dict[str, Any], rows: dict[str, list[list[int]]], pad_id: int, left: bool
    ) -> dict[str, Any]:
        """Pad the per-row lists (left for generation) and add the attention mask."""
        ids = rows.pop("input_ids")
        out["input_ids"] = pad_sequences(ids, pad_id, left)
        out["attention_mask"] = pad_sequences([[1] * len(s) for s in ids], 0, left)
        for key, values in rows.items():
            out[key] = pad_sequences(values, 0, left)
        return out

    def decode(self, loaded: LoadedModel, token_ids: torch.Tensor) -> list[str]:
        texts = loaded.processor.tokenizer.batch_decode(token_ids, skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]

    def generation_kwargs(self, loaded: LoadedModel) -> dict[str, Any]:
        tokenizer = loaded.processor.tokenizer
        return {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": self.end_id(tokenizer)}

    def new_tokens(self, output: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """`generate` returns prompt + new tokens for these models."""
        return output[:, inputs["input_ids"].shape[1] :]

    @torch.inference_mode()
    def generate(
        self,
        loaded: LoadedModel,
        batch: dict[str, torch.Tensor],
        max_new_tokens: int = 24,
        num_beams: int = 1,
    ) -> list[str]:
        """Greedy (num_beams=1) or beam search on a left-padded `encode(...)` batch."""
        model = loaded.model
        device = next(model.parameters()).device
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels" and torch.is_tensor(v)}
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            num_beams=num_beams,
            do_sample=False,
            **self.generation_kwargs(loaded),
        )
        return self.decode(loaded, self.new_tokens(output, inputs).cpu())
