"""Map-style access to prepared shards: ``view[i]`` is the ``i``-th sample as ``mmformer prepare`` wrote it.

Why a map-style view driven by our own samplers, rather than litdata's ``StreamingDataLoader`` and its
``state_dict``: the samplers of :mod:`mmformer.data.common` already give every DataModule DDP sharding,
exact mid-epoch resume (per rank), augmentation seeded per (epoch, sample) and length bucketing, and
they do it identically for memory and shards — a run from shards sees bit-identical batches to the
in-memory run of the same source (tested), so switching to shards changes nothing but memory.
litdata's own loader resumes by counting samples per worker, owns the shuffle (no length bucketing,
no seeded augmentation per sample) and its resume rides on Lightning restoring a loader's
``state_dict`` — a second, different resume path to keep exact. Random access costs little once
litdata's batch decoding is off (``batch_decode=0``): its default decode window decodes 256 neighbours
per access, built for sequential streaming. For object storage the samplers shuffle chunk-aware
(:func:`~mmformer.data.common.sampling.chunk_window_order`), so a rank needs a few chunks at a time and
each rank reads its own block of chunks.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmformer.data.shards.format import ShardError, ShardInfo, expect, is_remote, read_index


class ShardView(Dataset):
    """The samples of one prepared split (a local folder or an object-storage URI), by index.

    The index is checked when the view is made (kind, fields, chunk files), before training; litdata's
    dataset is opened lazily in each process, so the view pickles cheaply into DataLoader workers.

    Args:
        uri: the split's shard folder, or ``s3://``/``gs://``/... URI.
        kind: the source kind a reader expects (a shard of another kind is refused).
        fields: fields the reader needs.
        cache_dir: where chunks of a remote URI are cached (litdata's default when None).
    """

    def __init__(self, uri: str, kind: str, fields: Iterable[str] = (), cache_dir: str | None = None) -> None:
        self.uri, self.cache_dir = str(uri), cache_dir
        data, self._folder = read_index(self.uri, cache_dir)
        self.info: ShardInfo = expect(self.uri, data, kind, fields)
        sizes = [int(c["chunk_size"]) for c in data["chunks"]]
        if sum(sizes) != self.info.count:
            raise ShardError(f"{self.uri}: its chunks hold {sum(sizes)} samples, its index says {self.info.count}; "
                             f"prepare it again")
        # (N,) chunk id of each sample, for chunk-aware shuffling
        self.chunks = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        self._ds: Any = None

    def __len__(self) -> int:
        return self.info.count

    def _open(self) -> Any:
        if self._ds is None:
            from litdata import StreamingDataset

            # litdata (0.2.76) keeps a "page" of items per access and finds its end with a Python loop over item
            # offsets, slow per random access to small samples. Page 0 slices the mapped chunk directly; a
            # user's own setting wins.
            os.environ.setdefault("LITDATA_POSIX_PAGE_BYTES", "0")

            source = self.uri if is_remote(self.uri) else self._folder
            try:
                self._ds = StreamingDataset(source, cache_dir=self.cache_dir, batch_decode=0)
            except Exception as e:  # noqa: BLE001 - the storage client's error, named with the URI
                raise ShardError(f"cannot read shards at {self.uri}: {type(e).__name__}: {e}") from e
        return self._ds

    def __getitem__(self, i: int) -> dict[str, Any]:
        try:
            return self._open()[int(i)]
        except ShardError:
            raise
        except Exception as e:  # noqa: BLE001 - a chunk that went missing or bad after the check
            raise ShardError(f"{self.uri}: cannot read sample {i} (chunk {int(self.chunks[i])}): "
                             f"{type(e).__name__}: {e}") from e

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_ds": None}  # each worker opens its own reader

    def chunk_ids(self, rows: Tensor) -> Tensor:
        """``(len(rows),)`` the chunk of each of ``rows`` (sample numbers)."""
        return self.chunks[rows]
