"""Model families by name: the one place that maps `model.family` to code (one line per family)."""

from __future__ import annotations

from ptpeft_cli.models.base import LoadedModel, ModelFamily
from ptpeft_cli.registry import Registry

FAMILIES: Registry[ModelFamily] = Registry("model.family", {
    "tiny_llava": "ptpeft_cli.models.tiny_llava:TinyLlavaFamily",
    "llava15": "ptpeft_cli.models.llava15:Llava15Family",
    "qwen2_vl": "ptpeft_cli.models.qwen2_vl:Qwen2VLFamily",
    "qwen2_5_vl": "ptpeft_cli.models.qwen2_5_vl:Qwen2_5_VLFamily",
    "blip2_opt": "ptpeft_cli.models.blip2_opt:Blip2OptFamily",
    "instructblip": "ptpeft_cli.models.instructblip:InstructBlipFamily",
    "paligemma": "ptpeft_cli.models.paligemma:PaliGemmaFamily",
    "git": "ptpeft_cli.models.git:GitFamily",
    "blip": "ptpeft_cli.models.blip:BlipFamily",
    "hf": "ptpeft_cli.models.hf:HFFamily",
})


def get_family(name: str) -> ModelFamily:
    """A fresh family object; a UserError lists the known ones."""
    return FAMILIES.get(name)()


__all__ = ["FAMILIES", "LoadedModel", "ModelFamily", "get_family"]
