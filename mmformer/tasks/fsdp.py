"""Lightning's FSDP strategy (FSDP1), also on CPU processes; full checkpoints read weights-only; exact resume.

``configs/trainer/fsdp.yaml`` names :class:`FSDPStrategy`: Lightning's
:class:`pytorch_lightning.strategies.FSDPStrategy` with the same arguments and, on GPUs, the same sharding,
precision and checkpoint files. What differs:

- CPU processes (gloo) work: Lightning refuses FSDP without a GPU accelerator and hands FSDP
  ``device_id=None`` for a CPU device, which torch 2.11 rejects ("FSDP needs a non-CPU accelerator
  device"); here FSDP gets ``device_id=torch.device("cpu")``, and gathering a full state dict does not
  "offload to CPU" (on a CPU device that reads freed memory). So the preset runs without a GPU::

      mmformer fit --config tasks/<recipe>.yaml --trainer configs/trainer/fsdp.yaml \
          --trainer.accelerator=cpu --trainer.devices=2 --trainer.precision=32-true

- A sharded checkpoint (a folder; ``state_dict_type: sharded``) loads only when torch.distributed.checkpoint's
  ``.metadata`` (a pickle torch reads with a plain :func:`pickle.load`) names nothing but checkpoint metadata
  classes (:func:`check_sharded_metadata`), and its ``meta.pt`` is read weights-only.
- A full (single-file) checkpoint given to ``--ckpt_path`` is read with ``torch.load(weights_only=True)``
  (Lightning's FSDP loader unpickles it with a plain :class:`pickle.Unpickler`, which runs whatever code a
  tampered file names); its keys are upgraded first when an older mmformer wrote it, and a file that does
  not fit the model is one error naming it.
- Weight decay applies to the same parameters as under DDP: the sharded parameters are 1-D, so the
  optimizer's decay/no-decay split reads their dims as recorded before wrapping.
- A run resumed mid-epoch continues with the batches it stopped at, as under DDP (Lightning restores FSDP
  runs after building the training loader; here the loader is built again after the DataModule's state).
"""

from __future__ import annotations

import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ContextManager, Generator

import torch
from pytorch_lightning.core.optimizer import LightningOptimizer
from pytorch_lightning.strategies import FSDPStrategy as _LightningFSDP
from pytorch_lightning.trainer.states import TrainerFn
from torch import Tensor, nn
from torch.optim import Optimizer

from mmformer.checkpoint import read_checkpoint
from mmformer.tasks.optim import remember_dims


class FSDPStrategy(_LightningFSDP):
    """:class:`pytorch_lightning.strategies.FSDPStrategy` that also shards over CPU processes (gloo) and reads
    full checkpoints weights-only. Takes the same arguments (``auto_wrap_policy``, ``sharding_strategy``, ...)."""

    def _device_id(self) -> int | torch.device | None:
        """What FSDP's ``device_id`` gets: Lightning's device index on GPUs, the CPU device itself on CPUs."""
        return torch.device("cpu") if self.root_device.type == "cpu" else self.root_device.index

    def _setup_model(self, model: nn.Module) -> nn.Module:
        remember_dims(model)  # sharded parameters are 1-D: weight decay is chosen by these dims
        if self.root_device.type != "cpu":
            return super()._setup_model(model)
        from lightning_fabric.strategies.fsdp import _move_torchmetrics_to_device, _setup_activation_checkpointing
        from torch.distributed.fsdp import FullyShardedDataParallel

        if not any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
            # Lightning's wrapping, with a device_id torch accepts for CPU parameters
            model = FullyShardedDataParallel(module=model, cpu_offload=self.cpu_offload,
                                             mixed_precision=self.mixed_precision_config,
                                             sharding_strategy=self.sharding_strategy, device_id=self._device_id(),
                                             **self.kwargs)
        _move_torchmetrics_to_device(model, self.root_device)
        _setup_activation_checkpointing(model, self._activation_checkpointing_kwargs)
        return model

    @contextmanager
    def model_sharded_context(self) -> Generator[None, None, None]:
        if self.root_device.type != "cpu":
            with super().model_sharded_context():
                yield
            return
        from torch.distributed.fsdp import FullyShardedDataParallel
        from torch.distributed.fsdp.wrap import enable_wrap

        with enable_wrap(wrapper_cls=FullyShardedDataParallel, cpu_offload=self.cpu_offload,
                         mixed_precision=self.mixed_precision_config, sharding_strategy=self.sharding_strategy,
                         device_id=self._device_id(), **self.kwargs):
            yield

    def _full_state_dict(self, rank0_only: bool = True) -> ContextManager[Any]:
        """FSDP's full (gathered) state-dict mode, as Lightning sets it, except that CPU processes do not
        "offload to CPU": on a CPU device torch 2.11 frees the gathered storage that offloaded views still point
        to (``state_dict()`` then reads freed memory: a crash or a "storage of size 0" error)."""
        from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        offload = self.root_device.type != "cpu"
        return FSDP.state_dict_type(self.model, StateDictType.FULL_STATE_DICT,
                                    FullStateDictConfig(offload_to_cpu=offload, rank0_only=rank0_only),
                                    FullOptimStateDictConfig(offload_to_cpu=offload, rank0_only=rank0_only))

    def lightning_module_state_dict(self) -> dict[str, Any]:
        if self._state_dict_type != "full":
            return super().lightning_module_state_dict()
        with self._full_state_dict():
            return self.model.state_dict()

    def optimizer_state(self, optimizer: Optimizer) -> dict[str, Tensor]:
        if self._state_dict_type != "full":
            return super().optimizer_state(optimizer)
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import OptimStateKeyType

        if isinstance(optimizer, LightningOptimizer):
            optimizer = optimizer._optimizer
        with self._full_state_dict():
            state = FSDP.optim_state_dict(self.model, optimizer)
            if self.global_rank == 0:  # stored keyed by parameter id, as a plain optimizer's (Lightning's format)
                state = FSDP.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_ID, self.model)
            return state

    def load_checkpoint(self, checkpoint_path: str | Path, weights_only: bool | None = None) -> dict[str, Any]:
        """A sharded checkpoint (a folder) loads as Lightning loads it; a full one (a file) is read weights-only
        (Lightning's own reader unpickles anything) and scattered into the shards."""
        from lightning_fabric.strategies.fsdp import _is_full_checkpoint
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
        from torch.distributed.fsdp import OptimStateKeyType

        path = Path(self.broadcast(checkpoint_path))
        if not _is_full_checkpoint(path):
            if path.is_dir():
                check_sharded_metadata(path)
            self._reload_train_loader()
            return super().load_checkpoint(path, weights_only=True)  # its meta.pt: weights-only too
        checkpoint = read_checkpoint(path, mmap=True)  # a ValueError naming the file when not weights-only safe
        self._reload_train_loader()
        module = self.lightning_module
        upgrade = getattr(module, "upgrade_checkpoint", None)  # a TaskModule: older keys renamed before loading
        if callable(upgrade):
            upgrade(checkpoint)
        try:
            with self._full_state_dict(rank0_only=False):  # every rank holds the full state and keeps its shard
                self.model.load_state_dict(checkpoint.pop("state_dict"), strict=module.strict_loading)
        except RuntimeError as e:  # torch's "Error(s) in loading state_dict": missing/unexpected keys, shapes
            raise ValueError(f"the checkpoint {path} does not fit {type(module).__name__} as this run configures "
                             f"it ({str(e).splitlines()[0][:300]}); run with the recipe and overrides it was "
                             f"trained with (its config.yaml is saved beside its checkpoints)") from e
        optimizer_states = checkpoint.get("optimizer_states")
        if optimizer_states is None or self.lightning_module.trainer.state.fn != TrainerFn.FITTING:
            return checkpoint
        if len(self.optimizers) != len(optimizer_states):
            raise RuntimeError(f"this run has {len(self.optimizers)} optimizers but the checkpoint {path} has "
                               f"{len(optimizer_states)}; resume with the configuration it was trained with")
        with self._full_state_dict(rank0_only=False):
            for optimizer, state in zip(self.optimizers, optimizer_states):
                if state["state"] and isinstance(next(iter(state["state"])), int):  # keyed by id: by name for FSDP
                    state = FSDP.rekey_optim_state_dict(state, OptimStateKeyType.PARAM_NAME, self.model)
                optimizer.load_state_dict(FSDP.optim_state_dict_to_load(self.model, optimizer, state))
        return checkpoint

    def _reload_train_loader(self) -> None:
        """Lightning restores an FSDP run after the strategy's setup, where ``configure_optimizers`` (through
        ``trainer.estimated_stepping_batches``) has built the training loader already: from the epoch's start,
        before the DataModule's state (its place in the epoch) is restored. Dropping that loader makes the fit
        loop build it again, after the restore, so a mid-epoch resume continues with the batches it stopped
        at (as under DDP, which restores before setup)."""
        trainer = self.lightning_module.trainer
        if trainer.state.fn == TrainerFn.FITTING:
            trainer.fit_loop._combined_loader = None


# What torch.distributed.checkpoint's .metadata pickle may name: its own metadata records and the plain values
# they hold (sizes, dtypes, layouts, paths). Anything else could run code while torch unpickles the file.
_METADATA_GLOBALS = {
    "torch.distributed.checkpoint.metadata": {"Metadata", "MetadataIndex", "BytesStorageMetadata",
                                              "ChunkStorageMetadata", "StorageMeta", "TensorProperties",
                                              "TensorStorageMetadata", "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = name in _METADATA_GLOBALS.get(module, set())
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            allowed = True  # torch.float32, ...
        if not allowed:
            raise pickle.UnpicklingError(f"{module}.{name} is not checkpoint metadata")
        return super().find_class(module, name)


def check_sharded_metadata(folder: Path) -> None:
    """Raises a ValueError unless ``folder/.metadata`` unpickles with checkpoint-metadata classes alone (torch
    reads it with a plain :func:`pickle.load`, which would run whatever code a tampered file names)."""
    meta = folder / ".metadata"
    try:
        with open(meta, "rb") as f:
            _MetadataUnpickler(f).load()
    except Exception as e:  # a name outside the allowlist, a truncated or missing file
        raise ValueError(f"sharded checkpoint {folder} cannot be loaded safely: {meta} ({type(e).__name__}: "
                         f"{str(e)[:200]}); load only sharded checkpoints you wrote, or save full ones "
                         f"(state_dict_type: full)") from e
