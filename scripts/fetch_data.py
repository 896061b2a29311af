"""Fetch COCO 2014 images, the Karpathy split and VQAv2 and lay them out as ptpeft reads them.

For a machine with internet access (standard library only: urllib + zipfile). Usage:

    python scripts/fetch_data.py karpathy coco --root /data/coco    # captioning (~19 GB of images)
    python scripts/fetch_data.py vqav2 --root /data/vqa             # VQAv2 train/val questions + answers
    python scripts/fetch_data.py vqav2-test --root /data/vqa        # test-dev / test-std questions
    python scripts/fetch_data.py coco-test --root /data/coco        # test2015 images (for test-dev)

Resulting layout (docs/data.md), which `task.dataset.root` points at:

    /data/coco/dataset_coco.json   /data/coco/train2014/COCO_train2014_000000000009.jpg   /data/coco/val2014/...
    /data/vqa/v2_OpenEnded_mscoco_{train,val}2014_questions.json   /data/vqa/v2_mscoco_{train,val}2014_annotations.json

Idempotent: archives go to `--downloads` (default ROOT/downloads), are downloaded once (a partial
download resumes), their size is checked against the server's and their md5 against the published
one where known; only files missing from ROOT (or of the wrong size) are extracted. Delete the
downloads folder afterwards to save space. An archive already in the downloads folder under its
official name (train2014.zip, caption_datasets.zip, v2_Questions_Train_mscoco.zip, ...) is used as
is, so where a URL has moved, fetch the archive by other means and rerun. `lay_out` does the
layout alone (tests run it on fake archives).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


@dataclass(frozen=True)
class Archive:
    """One official download and what ptpeft needs from it: file names (taken wherever they sit in
    the zip) and directories ending in "/" (kept with their content, from that directory down)."""

    url: str
    members: tuple[str, ...]
    md5: str | None = None  # published checksum, where one is known

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.url).name


COCO_ZIPS = "http://images.cocodataset.org/zips"
VQA_ZIPS = "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa"
KARPATHY_URL = "http://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
TARGETS: dict[str, tuple[Archive, ...]] = {
    "coco": (Archive(f"{COCO_ZIPS}/train2014.zip", ("train2014/",), "0da8c0bd3d6becc4dcb32757491aca88"),
             Archive(f"{COCO_ZIPS}/val2014.zip", ("val2014/",), "a3d79f5ed8d289b7a7554ce06a5782b3")),
    "coco-test": (Archive(f"{COCO_ZIPS}/test2015.zip", ("test2015/",), "04127eef689ceac55e3a572c2c92f264"),),
    "karpathy": (Archive(KARPATHY_URL, ("dataset_coco.json",)),),
    "vqav2": (Archive(f"{VQA_ZIPS}/v2_Questions_Train_mscoco.zip", ("v2_OpenEnded_mscoco_train2014_questions.json",)),
              Archive(f"{VQA_ZIPS}/v2_Annotations_Train_mscoco.zip", ("v2_mscoco_train2014_annotations.json",)),
              Archive(f"{VQA_ZIPS}/v2_Questions_Val_mscoco.zip", ("v2_OpenEnded_mscoco_val2014_questions.json",)),
              Archive(f"{VQA_ZIPS}/v2_Annotations_Val_mscoco.zip", ("v2_mscoco_val2014_annotations.json",))),
    "vqav2-test": (Archive(f"{VQA_ZIPS}/v2_Questions_Test_mscoco.zip",
                           ("v2_OpenEnded_mscoco_test-dev2015_questions.json",
                            "v2_OpenEnded_mscoco_test2015_questions.json")),),
}
_CHUNK = 1 << 20


def _target(name: str, members: tuple[str, ...]) -> str | None:
    """Where a zip entry goes under ROOT, or None if ptpeft does not need it."""
    parts = PurePosixPath(name).parts
    if not parts or "__MACOSX" in parts or name.endswith("/"):
        return None
    for member in members:
        if member.endswith("/"):
            directory = member.rstrip("/")
            if directory in parts[:-1]:
                return "/".join(parts[parts.index(directory):])
        elif parts[-1] == member:
            return member
    return None


def lay_out(archive: Path, members: tuple[str, ...], root: Path) -> list[Path]:
    """Extract what ptpeft needs from a downloaded zip into `root`, in the official layout.

    Files already there with the size the zip records are kept, so a rerun (or a run after an
    interrupted one) writes only what is missing; each file is written to a temporary name and
    renamed, so a crash never leaves a truncated file that looks complete. Returns the paths
    written. Raises ValueError if the zip lacks a member (a wrong or changed download).
    """
    written: list[Path] = []
    found: set[str] = set()
    with zipfile.ZipFile(archive) as zipped:
        for info in zipped.infolist():
            relative = _target(info.filename, members)
            if relative is None:
                continue
            found.add(next(m for m in members if relative == m or relative.startswith(m)))
            destination = root / relative
            if destination.is_file() and destination.stat().st_size == info.file_size:
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            partial = destination.with_name(destination.name + ".part")
            with zipped.open(info) as source, partial.open("wb") as sink:
                shutil.copyfileobj(source, sink, _CHUNK)
            partial.replace(destination)
            written.append(destination)
    if missing := [m for m in members if m not in found]:
        raise ValueError(f"{archive} does not contain {missing}; is it the right download?")
    return written


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, destination: Path, md5: str | None = None) -> Path:
    """`url` to `destination` unless it is already there; resumes a partial download, checks the
    size against the server's Content-Length and the md5 when one is published."""
    if destination.is_file():
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    offset = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    expected = -1
    try:
        with urllib.request.urlopen(request) as response:  # noqa: S310 - fixed official URLs
            resumed = response.status == 206
            expected = int(response.headers.get("Content-Length", -1)) + (offset if resumed else 0)
            with partial.open("ab" if resumed else "wb") as sink:
                shutil.copyfileobj(response, sink, _CHUNK)
    except urllib.error.HTTPError as error:
        if error.code != 416:  # 416: nothing left to resume, the partial file is complete
            raise
    size = partial.stat().st_size
    if expected >= 0 and size != expected:
        raise OSError(f"{url}: got {size} bytes, the server announced {expected}; rerun to resume")
    if md5 and (actual := md5sum(partial)) != md5:
        partial.unlink()
        raise OSError(f"{url}: md5 {actual} differs from the published {md5}; deleted, rerun to fetch again")
    partial.replace(destination)
    return destination


def fetch(target: str, root: Path, downloads: Path) -> list[Path]:
    """Download (if needed) and lay out every archive of `target`; the paths written."""
    written: list[Path] = []
    for archive in TARGETS[target]:
        local = download(archive.url, downloads / archive.file_name, archive.md5)
        written += lay_out(local, archive.members, root)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("targets", nargs="+", choices=sorted(TARGETS), help="what to fetch")
    parser.add_argument("--root", type=Path, required=True, help="the directory task.dataset.root will name")
    parser.add_argument("--downloads", type=Path, default=None, help="where archives go (default ROOT/downloads)")
    args = parser.parse_args(argv)
    downloads = args.downloads or args.root / "downloads"
    for target in args.targets:
        written = fetch(target, args.root, downloads)
        print(f"{target}: {len(written)} files written under {args.root} (the rest were already there)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
