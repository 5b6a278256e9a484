"""What every mmformer task module shares: the data it needs, declared and bound once
(:class:`~mmformer.data.spec.DataSpec`); exact resume of the random stream; a stop with the step and
batch named when the loss stops being finite; checkpoints written before the redesign load."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytorch_lightning as pl
import torch

from mmformer.data.spec import DataSpec, ProvidesDataSpec
from mmformer.finetune.lora import lora_spec, restore_lora
from mmformer.models.builders import config_from_dict, config_to_dict
from mmformer.models.data_fields import fill_unset, unset_fields
from mmformer.tasks.checkpoint_fit import WRITER_KEY, check_fits, describe
from mmformer.tasks.composition import Composable
from mmformer.tasks.legacy import (FORMAT_KEY, FORMAT_VERSION, legacy_task_name, upgrade_module_names,
                                   upgrade_state_dict)
from mmformer.tasks.model_from_data import complete_config


LORA_KEY = "mmformer_lora"  # checkpoint entry: {LoRA layer name: {rank, alpha, dropout}}
MODEL_CONFIG_KEY = "mmformer_model_config"  # checkpoint entry: the model config as built (config_to_dict)


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message names where."""


class TaskModule(Composable, pl.LightningModule):
    """Base of the task modules.

    Checkpoints carry torch's RNG states (CPU and CUDA, as uint8 tensors, so they load with
    ``weights_only=True``) and numpy's global one (timm's Mixup/CutMix draw from it; as tensors and
    ints). A resumed run restores them before its first training batch, so dropout, stochastic
    depth and mixup draw the same numbers as an uninterrupted run would.

    A NaN/inf training loss is recorded on the device (no host sync per step) and raised as
    :class:`NonFiniteLossError` at the next logging step or checkpoint save, whichever comes
    first, so no checkpoint is written from poisoned weights.

    Data: a task names the :class:`~mmformer.data.spec.DataSpec` fields it needs in
    ``required_data``; :meth:`setup` takes the spec from the trainer's DataModule (which must
    implement :class:`~mmformer.data.spec.ProvidesDataSpec`), checks them, and hands the spec to
    :meth:`bind_data` once per stage. Nothing else reads the DataModule.

    A model with LoRA layers (:class:`mmformer.tasks.FineTuning`) records them in its checkpoints
    (``mmformer_lora``), and loading one rebuilds them before the weights load, so ``test``, ``export``
    and resume need no fine-tuning settings.

    Model: a task keeps its model config (:mod:`mmformer.models.config`) and builds the model with
    :meth:`init_model`. Sizes the data gives (classes, vocabulary, control sizes) may be left None: the model is
    then built when the data is bound, from the config completed by the spec
    (:func:`~mmformer.tasks.model_from_data.complete_config`), before a checkpoint's weights load; a checkpoint
    stores the config as built (``mmformer_model_config``), so loading one needs no data.
    :meth:`on_model_built` is where a task makes what depends on those sizes (metrics).

    Checkpoints are marked with ``mmformer_format``; an older one (without it) has its state_dict
    keys upgraded in :meth:`on_load_checkpoint` (see :func:`mmformer.tasks.legacy.upgrade_state_dict`).
    """

    required_data: ClassVar[tuple[str, ...]] = ()  # DataSpec fields this task needs

    def __init__(self) -> None:
        super().__init__()
        self._rng_to_restore: dict[str, Any] | None = None
        self._first_nonfinite: torch.Tensor | None = None  # global step of the first NaN/inf loss, -1 if none
        self._where: dict[int, tuple[int, int]] = {}  # step → (epoch, batch_idx) since the last check
        self.register_module("model", None)  # None until built (it may wait for the data); a composed task reads
        self.model_config: Any = None          # its composite's part instead (mmformer.tasks.composition)

    # ---- the model ------------------------------------------------------------------------------
    def init_model(self, config: Any) -> None:
        """Keeps ``config`` and builds the model now (:meth:`build_model`) when nothing in it waits for the data;
        else the model is built when the data is bound (:meth:`bind_trainer_data`) or a checkpoint loads
        (:meth:`on_load_checkpoint`)."""
        self.model_config = config
        if not unset_fields(config):
            self.build_model(config)

    def model_pending(self) -> bool:
        """Whether the model still waits to be built (a composed task's is its composite's to build)."""
        return self.task_context is None and self._modules.get("model") is None and self.model_config is not None

    def on_model_built(self) -> None:
        """Called once the model exists (built here, or handed over by a composite): make here what depends on its
        data-given sizes (metrics, buffers); ``model_config`` is complete by then."""

    def complete_model_config(self, spec: DataSpec, provider: str = "the data") -> Any:
        """The task's model config with the sizes it leaves to the data taken from ``spec``."""
        return complete_config(self.model_config, spec, provider)

    def build_from_data(self, spec: DataSpec, stage: str, provider: str) -> None:
        """Builds the waiting model from its config completed by ``spec``; at ``test``/``predict``, data that
        cannot size it leaves the build to the checkpoint's stored config (:meth:`on_load_checkpoint`)."""
        try:
            config = self.complete_model_config(spec, provider)
        except ValueError:
            if stage == "fit":
                raise
            return
        self.build_model(config)

    def checkpoint_spec(self, checkpoint: dict[str, Any]) -> DataSpec:
        """What a checkpoint without a stored model config tells about its data (a text task's vocabulary)."""
        return DataSpec()

    def setup(self, stage: str) -> None:
        self.bind_trainer_data(stage)

    def bind_trainer_data(self, stage: str) -> None:
        """Reads the trainer's DataModule's spec, checks it and calls :meth:`bind_data`, once per trainer,
        DataModule and stage (and again after :meth:`teardown`): :meth:`setup` calls it, and so does a callback
        that must see the bound task earlier (the best checkpoint's headline metric follows the data, and
        callbacks are set up before the module)."""
        dm = self.trainer.datamodule
        key = (id(self.trainer), id(dm), stage)
        if self.__dict__.get("_bound") == key:
            return
        self._bound = key
        # Data that declares nothing (a user's plain LightningDataModule, or bare dataloaders) gives an
        # empty spec: it serves the tasks that need nothing from it, and `require` names what others miss.
        spec = dm.data_spec() if isinstance(dm, ProvidesDataSpec) else DataSpec()
        provider = type(dm).__name__ if dm is not None else "the dataloaders given without a DataModule"
        if not isinstance(spec, DataSpec):
            raise TypeError(f"{provider}.data_spec() returned {type(spec).__name__}, not a DataSpec")
        spec.require(self.required_data_for(stage), provider, type(self).__name__)
        if self.model_pending():
            self.build_from_data(spec, stage, provider)
        self.bind_data(spec, stage)

    def _require_model(self) -> None:
        if self.model_pending():
            missing = ", ".join(unset_fields(self.model_config)) if self.model_config is not None else "sizes"
            raise ValueError(f"{type(self).__name__}'s model was never built: its {missing} come from the data or a "
                             f"checkpoint, and this run has neither; give --ckpt_path (a checkpoint of this recipe) or "
                             f"data that declares them")

    def on_validation_start(self) -> None:
        self._require_model()

    def on_test_start(self) -> None:
        self._require_model()

    def on_predict_start(self) -> None:
        self._require_model()

    def teardown(self, stage: str) -> None:
        # the next run (another trainer.test with other data, say) binds its own data again
        super().teardown(stage)
        self.__dict__.pop("_bound", None)

    def required_data_for(self, stage: str) -> tuple[str, ...]:
        """The :class:`DataSpec` fields this task needs at ``stage`` (default: ``required_data`` always)."""
        return type(self).required_data

    def bind_data(self, spec: DataSpec, stage: str) -> None:
        """Stores what the task needs from its data and checks it fits the model (clear errors).

        Called from :meth:`setup`, after the DataModule's own setup and before a checkpoint's weights
        and buffers are restored (so on ``fit`` and ``test`` alike, restored buffers win).

        Args:
            spec: the DataModule's spec; every field in ``required_data`` is set.
            stage: ``fit``, ``validate``, ``test`` or ``predict``.
        """

    def headline_metric(self) -> tuple[str, str] | None:
        """The validation key and its mode (``min``/``max``) the run's best checkpoint is chosen on
        (:class:`~mmformer.tasks.best_checkpoint.BestCheckpoint`); None = keep no best checkpoint."""
        return None

    def monitor_problem(self, key: str) -> str | None:
        """Why ``key`` will not be logged on every validation run of this task's settings, or None."""
        return None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        if self._first_nonfinite is None or self._first_nonfinite.device != loss.device:
            self._first_nonfinite = torch.full((), -1, dtype=torch.long, device=loss.device)
        step = self.global_step
        self._where[step] = (self.current_epoch, batch_idx)
        # Device-side bookkeeping only (a python scalar in torch.where needs no host-to-device copy).
        new = (~torch.isfinite(loss.detach())) & (self._first_nonfinite < 0)
        self._first_nonfinite = torch.where(new, step, self._first_nonfinite)
        if (step + 1) % max(1, self.trainer.log_every_n_steps) == 0:
            self._raise_if_nonfinite()

    def _raise_if_nonfinite(self) -> None:
        if self._first_nonfinite is None:
            return
        step = int(self._first_nonfinite)  # the one host sync, every few steps
        if step >= 0:
            epoch, batch_idx = self._where.get(step, (-1, -1))
            raise NonFiniteLossError(
                f"the training loss became NaN/inf at global step {step} (epoch {epoch}, batch {batch_idx}); "
                f"training stopped and no checkpoint was written from these weights. Check that batch's inputs "
                f"for NaN/inf, lower the learning rate, or set trainer.gradient_clip_val, then resume from "
                f"the last checkpoint"
            )
        self._where.clear()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._raise_if_nonfinite()
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        rng["numpy"] = _numpy_state()
        checkpoint["mmformer_rng"] = rng
        checkpoint[FORMAT_KEY] = FORMAT_VERSION
        checkpoint[WRITER_KEY] = describe(self)  # so a run it does not fit can say who wrote it
        try:
            checkpoint[MODEL_CONFIG_KEY] = config_to_dict(self.model_config)
        except (TypeError, ValueError):  # a tokenizer given as a python callable: the config cannot be written
            pass
        if spec := lora_spec(self):
            checkpoint[LORA_KEY] = spec

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Lightning calls this before loading ``checkpoint["state_dict"]``: older keys are upgraded here."""
        self.upgrade_checkpoint(checkpoint)
        if self.model_pending():  # no data sized it (export, predict): the checkpoint's own config does
            self.build_from_checkpoint(checkpoint)
        restore_lora(self, checkpoint.get(LORA_KEY, {}))  # LoRA layers before their weights load
        # FSDP's loader (mmformer.tasks.fsdp) has loaded the weights into the shards and removed them already
        if "state_dict" in checkpoint:
            check_fits(self, checkpoint)  # a clear error instead of Lightning's Missing key(s)/size mismatch
        self._rng_to_restore = checkpoint.get("mmformer_rng")

    def build_from_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Builds the waiting model with the sizes the checkpoint's stored config records (its data's in training)."""
        stored = checkpoint.get(MODEL_CONFIG_KEY)
        if isinstance(stored, dict):  # the sizes the data gave in training; the rest stays the recipe's
            self.build_model(fill_unset(self.model_config, config_from_dict(stored)))
            return
        self.build_model(self.complete_model_config(self.checkpoint_spec(checkpoint), "the checkpoint"))

    def upgrade_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Renames an older checkpoint's state_dict keys (and the module names it records) in place to the
        current layout, and marks it current, so a second call changes nothing. Called by
        :meth:`on_load_checkpoint`, and by the FSDP strategy before it loads the weights itself."""
        version, task_name = checkpoint.get(FORMAT_KEY, 0), legacy_task_name(type(self))
        if version < FORMAT_VERSION:
            if "state_dict" in checkpoint:
                checkpoint["state_dict"] = upgrade_state_dict(task_name, checkpoint["state_dict"], version)
            # the writer's backbones and the LoRA layers are named by the old module names too
            writer = checkpoint.get(WRITER_KEY)
            if isinstance(writer, dict) and isinstance(writer.get("backbones"), dict):
                writer["backbones"] = upgrade_module_names(task_name, writer["backbones"], version)
            if isinstance(checkpoint.get(LORA_KEY), dict):
                checkpoint[LORA_KEY] = upgrade_module_names(task_name, checkpoint[LORA_KEY], version)
            checkpoint[FORMAT_KEY] = FORMAT_VERSION

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Restored here, not at load: loading and loop set-up may draw from the RNG in between.
        if self._rng_to_restore is not None:
            torch.set_rng_state(self._rng_to_restore["cpu"])
            if "cuda" in self._rng_to_restore and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self._rng_to_restore["cuda"])
            if "numpy" in self._rng_to_restore:
                _set_numpy_state(self._rng_to_restore["numpy"])
            self._rng_to_restore = None


def _numpy_state() -> dict[str, Any]:
    """numpy's global RNG state as weights_only-safe values (its key array as an int64 tensor)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}


def _set_numpy_state(state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["gauss"]))
