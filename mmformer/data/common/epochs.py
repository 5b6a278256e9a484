"""The epoch bookkeeping every training sampler shares: which epoch's order it yields, and where a checkpoint
restarts it, whatever order Lightning creates iterators and numbers epochs in."""

from __future__ import annotations

from torch.utils.data import DistributedSampler


class EpochSampler(DistributedSampler):
    """A ``DistributedSampler`` (so Lightning does not wrap it under DDP) whose order is a function of
    ``self.epoch``, the *data* epoch, restartable mid-epoch with :meth:`resume_at`.

    Two facts of Lightning 2.6 shape it. A resumed run's first iterator is created before ``set_epoch`` is
    called (and with DataLoader workers it draws its first batches at once), so :meth:`resume_at` sets the
    epoch itself. And a run stopped mid-epoch by ``max_steps`` or ``should_stop`` writes its checkpoint as
    if the epoch had ended, so the resumed run numbers the rest of that epoch one higher: the first
    ``set_epoch`` after :meth:`resume_at` names the resumed epoch, and the difference is kept for later
    epochs, so the data continues in the uninterrupted run's order (epoch ``n`` of data is the same
    samples, in the same order, whatever the trainer calls it).
    """

    _resume: tuple[int, int] | None = None  # (data epoch, items of it already trained on)
    _offset: int = 0  # data epoch - the epoch number Lightning gives
    _naming: bool = False  # the next set_epoch names the resumed epoch

    def resume_at(self, epoch: int, start: int) -> None:
        """Iterate data epoch ``epoch`` next, from its ``start``-th item on this rank (a mid-epoch checkpoint);
        items are samples for a sampler of indices, batches for a batch sampler."""
        self.epoch, self._resume, self._naming = epoch, (epoch, start), True

    def set_epoch(self, epoch: int) -> None:
        if self._naming:  # the trainer's number for the resumed epoch
            self._offset, self._naming = self.epoch - epoch, False
        self.epoch = epoch + self._offset

    def _start(self) -> int:
        """Called as an epoch's iteration begins: the items to skip (the resume point, used once)."""
        if self._resume is not None and self._resume[0] == self.epoch:
            start, self._resume = self._resume[1], None
            return start
        return 0
