"""Offline tokenizers in the style of each family's real one, and the tests' texts and images.

Trained here with the `tokenizers` library on a few lines: byte-level BPE (Qwen, OPT, SmolVLM),
SentencePiece-like BPE with a dummy prefix and BOS (Llama / LLaVA / Vicuna), WordPiece (BERT: GIT,
BLIP, InstructBLIP's Q-Former), and Gemma's own `GemmaTokenizer` class over a BPE vocabulary
trained here (PaliGemma).
The boundary cases that matter (a target tokenised after its prompt, BOS added or not, special
tokens around images) behave as with the real tokenizers; nothing is downloaded.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from PIL import Image
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import BertTokenizer, GemmaTokenizer, PreTrainedTokenizerFast

# Words of the prompts and targets the tests use (the tokenizers are trained on these lines).
CORPUS = [
    "a red circle and a blue square on a grey background.",
    "a small green triangle left of a big yellow star.",
    "question: what color is the circle? answer: red",
    "question: how many objects are there? answer: two",
    "Question: what shape is it? Short answer: square",
    "USER: describe the picture.\nASSISTANT: a photo of a cat",
    "caption: a picture of two dogs",
    "system\nYou are a helpful assistant.\nuser\nassistant\n",
]
CAPTION = "caption:"
QUESTIONS = ["question: what color is the circle? answer:", "question: how many objects? answer:"]
TARGETS = ["a small green triangle left of a big yellow star and a red circle.", "two"]
IMAGE_SIZE = 32


def images(count: int = 2, size: int = IMAGE_SIZE, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)) for _ in range(count)
    ]


def _train_bpe(
    pre_tokenizer: Any,
    decoder: Any,
    special: list[str],
    vocab_size: int,
    alphabet: list[str] | None = None,
    unk: str | None = None,
    corpus: list[str] = CORPUS,
    normalizer: Any = None,
) -> Tokenizer:
    backend = Tokenizer(models.BPE(unk_token=unk))
    backend.pre_tokenizer, backend.decoder = pre_tokenizer, decoder
    if normalizer is not None:
        backend.normalizer = normalizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=alphabet or [],
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    return backend


def byte_level_tokenizer(
    special: list[str], bos: str | None = None, **tokens: str
) -> PreTrainedTokenizerFast:
    """GPT-2/Qwen-style byte-level BPE; `bos` is prepended by the post-processor (OPT does)."""
    backend = _train_bpe(
        pre_tokenizers.ByteLevel(add_prefix_space=False),
        decoders.ByteLevel(),
        special,
        420,
        pre_tokenizers.ByteLevel.alphabet(),
    )
    if bos is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, backend.token_to_id(bos))]
        )
        tokens["bos_token"] = bos
    return PreTrainedTokenizerFast(tokenizer_object=backend, **tokens)


def llama_style_tokenizer(special: list[str], **tokens: str) -> PreTrainedTokenizerFast:
    """SentencePiece-like BPE (metaspace, dummy prefix) that prepends `<s>` like Llama's."""
    backend = _train_bpe(
        pre_tokenizers.Metaspace(prepend_scheme="first"),
        decoders.Metaspace(prepend_scheme="first"),
        special,
        320,
        sorted(set("".join(CORPUS))),
        unk="<unk>",
    )
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", backend.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", **tokens
    )


def gemma_tokenizer() -> GemmaTokenizer:
    """Gemma's tokenizer class (byte fallback, spaces as "▁", adds `<bos>`) over a BPE vocabulary
    trained on the corpus plus PaliGemma's task prefixes; PaliGemmaProcessor adds `<image>` and
    the location/segmentation tokens to it, as it does to the real one."""
    corpus = [*CORPUS, "caption en", "answer en what color is the circle?"]
    special = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]  # Gemma's ids 0-4
    backend = _train_bpe(
        pre_tokenizers.Split(pattern="▁", behavior="merged_with_next"),  # merges within words
        decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]),
        special,
        300,
        sorted(set("".join(corpus).replace(" ", "▁"))),
        unk="<unk>",
        corpus=corpus,
        normalizer=normalizers.Replace(" ", "▁"),
    )
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return GemmaTokenizer(vocab=model["vocab"], merges=merges)


def bert_tokenizer(extra_special: tuple[str, ...] = ()) -> BertTokenizer:
    """A WordPiece BERT tokenizer over the corpus words (GIT and BLIP use BERT's)."""
    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.normalizer = normalizers.BertNormalizer(lowercase=True)
    words.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *extra_special]
    for line in CORPUS:
        for token, _ in words.pre_tokenizer.pre_tokenize_str(words.normalizer.normalize_str(line)):
            if token not in vocab:
                vocab.append(token)
    return BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
