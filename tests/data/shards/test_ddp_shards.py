"""Two real processes (gloo on CPU) reading the same shards: one epoch visits every sample exactly once across
the ranks, and a run interrupted mid-epoch resumes on both ranks with exactly the uninterrupted order."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from mmformer.data import ImageFolderData, ManifestData
from mmformer.data.shards.prepare import prepare
from tests.data.manifests import ALL_FIELDS, sample_rows, write_manifest
from tests.data.shards.common import prepare_splits
from tests.data.shards.test_image_shards import KW, image_folder
from tests.data.test_manifest import ROLES

WORLD, EPOCH, CUT = 2, 1, 1  # interrupted after CUT steps of epoch EPOCH (the second)


def image_data(shards: str, data_dir: str) -> ImageFolderData:
    """Images, one sample a position (ResumableSampler), each rank its own block of chunks, a worker process."""
    return ImageFolderData(shards=shards, chunk_window=2, num_workers=1, **KW)


def manifest_data(shards: str, data_dir: str) -> ManifestData:
    """Every field type, length-bucketed batches (resumed in batches), audio and images decoded from the shards."""
    return ManifestData(shards=shards, fields=ALL_FIELDS, inputs=ROLES, vocab_size=40, batch_size=3, seed=3,
                        data_dir=data_dir, bucket_batches=2)


def _epoch(data: Any, steps: int | None = None, state: dict | None = None) -> list[list[int]]:
    """This rank's training batches (sample indices) of epoch EPOCH, the first ``steps`` of them or all."""
    data.trainer = SimpleNamespace(world_size=dist.get_world_size(), global_rank=dist.get_rank())
    data.setup("fit")
    if state is not None:
        data.load_state_dict(state)
    loader = data.train_dataloader()
    (loader.sampler if hasattr(loader.sampler, "set_epoch") else loader.batch_sampler).set_epoch(EPOCH)
    seen: list[list[int]] = []
    for batch in loader:
        seen.append(batch["index"].tolist())
        if steps is not None and len(seen) == steps:
            break
    return seen


def _rank(rank: int, make: Callable[[str, str], Any], shards: str, data_dir: str, rendezvous: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=300))  # a dead peer: fail, never hang
    try:
        full = _epoch(make(shards, data_dir))
        interrupted = make(shards, data_dir)
        part = _epoch(interrupted, steps=CUT)
        # what a checkpoint written after those steps records (ResumableDataModule.state_dict)
        progress = SimpleNamespace(current=SimpleNamespace(ready=CUT))  # the fit loop's batches taken this epoch
        loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))
        interrupted.trainer = SimpleNamespace(current_epoch=EPOCH, num_training_batches=len(full), fit_loop=loop)
        state = interrupted.state_dict()
        rest = _epoch(make(shards, data_dir), state=state)  # a fresh process's DataModule, resumed
        ranks: list[Any] = [None] * WORLD
        dist.all_gather_object(ranks, {"full": full, "part": part, "rest": rest, "state": state})
        if rank == 0:
            Path(out).write_text(json.dumps(ranks))
    finally:
        dist.destroy_process_group()


def _run(tmp_path: Path, make: Callable[[str, str], Any], shards: str) -> list[dict[str, Any]]:
    out = tmp_path / "ranks.json"
    mp.spawn(_rank, args=(make, shards, str(tmp_path / "data"), str(tmp_path / "rendezvous"), str(out)),
             nprocs=WORLD, join=True)
    return json.loads(out.read_text())


def _check_resume(ranks: list[dict[str, Any]]) -> None:
    for r, got in enumerate(ranks):
        assert len(got["full"]) > CUT, "the epoch must outlast the interruption"
        assert got["part"] == got["full"][:CUT], r
        assert got["rest"] == got["full"][CUT:], f"rank {r} resumed off the uninterrupted order"


def test_two_processes_cover_an_image_shard_epoch_once_and_resume_exactly(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "src")
    prepare("imagefolder", root, tmp_path / "shards", chunk_bytes="2KB", progress=False)
    ranks = _run(tmp_path, image_data, str(tmp_path / "shards"))
    seen = sorted(i for got in ranks for batch in got["full"] for i in batch)
    assert seen == list(range(18)), "each of the 18 training samples once, across the two ranks"
    assert ranks[0]["state"] == {"epoch": EPOCH, "samples_done": CUT * KW["batch_size"]}
    _check_resume(ranks)


@pytest.mark.filterwarnings("ignore:.*cut", "ignore:.*larger than the target chunk")
def test_two_processes_cover_a_manifest_shard_epoch_once_and_resume_exactly(tmp_path: Path) -> None:
    files = {"train": Path(write_manifest(tmp_path / "train.jsonl", sample_rows(tmp_path, 24)))}
    shards = prepare_splits("manifest", files, tmp_path / "shards", "8KB")
    ranks = _run(tmp_path, manifest_data, shards)
    seen = sorted(i for got in ranks for batch in got["full"] for i in batch)
    assert seen == list(range(24)), "each of the 24 training rows once, across the two ranks"
    assert ranks[0]["state"] == {"epoch": EPOCH, "batches_done": CUT}
    _check_resume(ranks)
