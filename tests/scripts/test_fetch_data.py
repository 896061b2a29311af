"""scripts/fetch_data.py without the internet: archives shaped like the official downloads (built
from the official-layout test tree) are laid out into exactly the tree ptpeft reads; reruns write
nothing; downloads resume and check sizes and md5 (file:// URLs stand in for the servers)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from official_tree import OfficialTree

from ptpeft_cli.cli import compose_config
from ptpeft_cli.tasks import get_task

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch_data.py"


@pytest.fixture(scope="module")
def fetch_data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_data", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _zip(path: Path, entries: dict[str, Path | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zipped:
        for name, content in entries.items():
            zipped.writestr(name, content if isinstance(content, bytes) else content.read_bytes())
    return path


def _official_archives(tree: OfficialTree, downloads: Path, fetch_data: ModuleType) -> None:
    """Fake downloads, named and shaped as the official ones (top folder in image zips, extra
    files and macOS junk that must be skipped)."""
    names = {archive.file_name: archive for archives in fetch_data.TARGETS.values() for archive in archives}
    for subset in ("train2014", "val2014", "test2015"):
        images = {f"{subset}/{p.name}": p for p in sorted((tree.coco / subset).iterdir())}
        _zip(downloads / f"{subset}.zip", {**images, f"__MACOSX/{subset}/._x.jpg": b"junk"})
    _zip(downloads / "caption_datasets.zip", {"dataset_coco.json": tree.karpathy_json,
                                              "dataset_flickr8k.json": b"{}"})
    for name, archive in names.items():
        if name.startswith("v2_"):
            _zip(downloads / name, {member: tree.vqa / member for member in archive.members})


def test_layout_from_official_archives_is_the_tree_ptpeft_reads_and_reruns_write_nothing(
        official_tree: OfficialTree, fetch_data: ModuleType, tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    _official_archives(official_tree, downloads, fetch_data)
    coco, vqa = tmp_path / "coco", tmp_path / "vqa"
    for target, root in [("karpathy", coco), ("coco", coco), ("coco-test", coco), ("vqav2", vqa), ("vqav2-test", vqa)]:
        assert fetch_data.fetch(target, root, downloads), target  # archives present: no network
    for source_root, laid_out in [(official_tree.coco, coco), (official_tree.vqa, vqa)]:
        expected = {p.relative_to(source_root) for p in source_root.rglob("*") if p.is_file()}
        expected -= {Path("annotations/captions_val2014.json")}  # not part of any fetched archive
        assert {p.relative_to(laid_out) for p in laid_out.rglob("*") if p.is_file()} == expected
    assert not list(coco.rglob("__MACOSX")) and not (coco / "dataset_flickr8k.json").exists()

    cfg = compose_config("train", ["task=captioning", "task.dataset.kind=coco_karpathy", f"task.dataset.root={coco}"])
    assert get_task(cfg.task).load().eval["example_id"] == official_tree.karpathy_ids("test")
    cfg = compose_config("train", ["task=vqa", "task.dataset.kind=vqav2", f"task.dataset.root={vqa}",
                                   f"task.dataset.image_root={coco}"])
    assert len(get_task(cfg.task).load().eval) == len(official_tree.question_ids("val2014"))

    assert fetch_data.main(["coco", "vqav2", "--root", str(coco), "--downloads", str(downloads)]) == 0
    assert fetch_data.fetch("coco", coco, downloads) == []
    damaged = next((coco / "val2014").iterdir())
    damaged.write_bytes(b"truncated")
    assert fetch_data.fetch("coco", coco, downloads) == [damaged]


def test_an_archive_without_the_expected_member_is_refused(fetch_data: ModuleType, tmp_path: Path) -> None:
    archive = _zip(tmp_path / "caption_datasets.zip", {"dataset_flickr30k.json": b"{}"})
    with pytest.raises(ValueError, match=r"does not contain \['dataset_coco.json'\]"):
        fetch_data.lay_out(archive, ("dataset_coco.json",), tmp_path / "coco")


def test_download_checks_md5_and_never_keeps_a_bad_file(fetch_data: ModuleType, tmp_path: Path) -> None:
    payload = b"official bytes" * 1000
    served = tmp_path / "server" / "val2014.zip"
    served.parent.mkdir()
    served.write_bytes(payload)
    url = served.as_uri()
    with pytest.raises(OSError, match="differs from the published"):
        fetch_data.download(url, tmp_path / "a" / "val2014.zip", md5="0" * 32)
    assert not list((tmp_path / "a").iterdir()), "a download that fails its md5 is deleted"

    good = hashlib.md5(payload).hexdigest()
    destination = tmp_path / "b" / "val2014.zip"
    destination.parent.mkdir()
    destination.with_name("val2014.zip.part").write_bytes(payload[:100])  # an interrupted download
    assert fetch_data.download(url, destination, md5=good).read_bytes() == payload
    served.unlink()  # already downloaded: no second request
    assert fetch_data.download(url, destination, md5=good) == destination
