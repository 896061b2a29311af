"""Build the embedded tiny LMM from scratch: word-level tokenizer, real processor, LLaVA model.

Everything here is a stock transformers/tokenizers class with a small configuration, so the
checkpoint it produces loads with plain `from_pretrained` and behaves like a real LLaVA.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from transformers import (
    CLIPImageProcessor,
    CLIPTextConfig,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

PAD, UNK, BOS, EOS, IMAGE = "<pad>", "<unk>", "<bos>", "<eos>", "<image>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS, IMAGE)
# Words the prompts use (see models/tiny_llava.py); always in the vocabulary.
PROMPT_WORDS: tuple[str, ...] = ("caption", "question", "answer", ":", "?", ".", ",")
IMAGE_SIZE = 64
PATCH_SIZE = 8
NUM_IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2


@dataclass(frozen=True)
class TinyShape:
    """Widths and depths of the tiny LMM (kept in the recipe so its hash covers them)."""

    vision_hidden: int = 128
    vision_layers: int = 3
    vision_heads: int = 4
    vision_intermediate: int = 384
    text_hidden: int = 192
    text_layers: int = 4
    text_heads: int = 6
    text_intermediate: int = 512
    clip_text_hidden: int = 128
    clip_text_layers: int = 2
    projection_dim: int = 128
    max_positions: int = 256

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def build_tokenizer(words: Iterable[str]) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over a closed vocabulary.

    Lower-cases, splits on whitespace and punctuation; the decoder re-attaches punctuation so
    decode(encode(text)) == text for the world's texts. No BOS/EOS is added automatically:
    the family places them explicitly (LLaVA-style processors expect that).
    """
    vocab_words = list(SPECIAL_TOKENS)
    for word in sorted({w.lower() for w in words} | set(PROMPT_WORDS)):
        if word not in vocab_words:
            vocab_words.append(word)
    vocab = {word: index for index, word in enumerate(vocab_words)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    # WordPiece(cleanup=True) joins with spaces and removes the space before . , ? ! ;
    # Replace also handles ':' which cleanup leaves alone. Tokens are decoded one by one, so
    # " :" is a whole token string here.
    backend.decoder = decoders.Sequence(
        [decoders.WordPiece(prefix="##", cleanup=True), decoders.Replace(Regex("^ :$"), ":")]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        extra_special_tokens={"image_token": IMAGE},
        padding_side="right",
        model_max_length=256,
        clean_up_tokenization_spaces=False,
    )


def build_image_processor() -> CLIPImageProcessor:
    """64x64 in, 64x64 out: resize to the full square (no crop) and CLIP normalisation."""
    return CLIPImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=False,
        do_convert_rgb=True,
    )


def build_processor(words: Iterable[str]) -> LlavaProcessor:
    """The real LlavaProcessor: expands one `<image>` into NUM_IMAGE_TOKENS placeholders."""
    return LlavaProcessor(
        image_processor=build_image_processor(),
        tokenizer=build_tokenizer(words),
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )


def vision_config(shape: TinyShape) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=shape.vision_hidden,
        intermediate_size=shape.vision_intermediate,
        num_hidden_layers=shape.vision_layers,
        num_attention_heads=shape.vision_heads,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=shape.projection_dim,
    )


def clip_text_config(shape: TinyShape, vocab_size: int, pad_id: int, eos_id: int) -> CLIPTextConfig:
    """Text tower used only during contrastive pre-training (then discarded)."""
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=shape.clip_text_hidden,
        intermediate_size=shape.clip_text_hidden * 3,
        num_hidden_layers=shape.clip_text_layers,
        num_attention_heads=4,
        max_position_embeddings=64,
        projection_dim=shape.projection_dim,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
        bos_token_id=eos_id,
    )


def build_model(shape: TinyShape, tokenizer: PreTrainedTokenizerFast) -> LlavaForConditionalGeneration:
    """A randomly initialised LlavaForConditionalGeneration sized by `shape`."""
    text_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.text_hidden,
        intermediate_size=shape.text_intermediate,
        num_hidden_layers=shape.text_layers,
        num_attention_heads=shape.text_heads,
        num_key_value_heads=shape.text_heads,
        max_position_embeddings=shape.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision_config(shape),
        text_config=text_config,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        image_seq_length=NUM_IMAGE_TOKENS,
    )
    config.pad_token_id = tokenizer.pad_token_id
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
