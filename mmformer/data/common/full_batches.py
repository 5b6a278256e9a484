"""A length-bucketing batch sampler whose training epochs keep only full batches (``drop_last``)."""

from __future__ import annotations

from mmformer.data.common.batching import BucketBatchSampler


class FullBucketBatchSampler(BucketBatchSampler):
    """:class:`BucketBatchSampler` whose training epochs drop the partial batch (a contrastive loss wants
    every batch, on every rank, of ``batch_size``); evaluation still sees every sample."""

    def _batches(self) -> list[list[int]]:
        batches = super()._batches()
        if not self.shuffle:
            return batches
        return [b for b in batches if len(b) == self.batch_size] or batches  # a split smaller than one batch: keep it
