"""The dataset sources a task can read (`task.dataset.kind`), one line each.

The registry sits here, above data/, because it names the embedded demo too: data/ holds only
official-format readers and never refers to the synthetic world, which is imported only when
`kind=synthetic` is picked.
"""

from __future__ import annotations

from typing import Any

from ptpeft_cli.data.sources import DataSource
from ptpeft_cli.registry import Registry

SOURCES: Registry[DataSource] = Registry("task.dataset.kind", {
    "synthetic": "ptpeft_cli.synthetic.source:SyntheticWorld",
    "coco_karpathy": "ptpeft_cli.data.official:KarpathyCaptions",
    "vqav2": "ptpeft_cli.data.official:Vqav2Questions",
    "hf": "ptpeft_cli.data.hub:HubDataset",
})


def get_source(dataset_cfg: Any) -> DataSource:
    return SOURCES.get(str(dataset_cfg.kind))(dataset_cfg)
