"""The data→task contract: what a DataModule declares about its data, and what a task must match.

DESIGN.md: what a model must match from its data (vocabulary, class names, statistics) is declared
and linked, never guessed from attribute names. Every mmformer DataModule implements
:class:`ProvidesDataSpec` and returns one :class:`DataSpec` after ``setup``; every task names the
fields it needs in ``required_data`` and receives the spec once, in ``bind_data`` (called from
``TaskModule.setup``, so after the DataModule's own ``setup`` and before a checkpoint's weights and
buffers are restored). A user's own DataModule plugs in by implementing ``data_spec()``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from torch import Tensor

if TYPE_CHECKING:  # sentencepiece is loaded only by the data that uses it
    from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab


@dataclass(frozen=True)
class ZeroShotSpec:
    """One zero-shot classification measured on an evaluation split.

    Attributes:
        column: which column of the split's ``labels`` ``(N, K)`` holds the class index (-1 = none).
        classes: class names, in label order.
        templates: prompts with ``{}`` for the class name; a class's text embedding is the
            normalized mean over its prompts (Radford et al. 2021, prompt ensembling).
    """

    column: int
    classes: Sequence[str]
    templates: Sequence[str] = ("{}",)


@dataclass(frozen=True)
class EvalSplit:
    """What one contrastive test split measures; metrics are logged as ``test/{name}<metric>``.

    Attributes:
        name: metric prefix ("" for the main split, e.g. "unseen_" for held-out pairs).
        retrieval: report recall@k in both directions over the split's pairs.
        zeroshot: zero-shot classifications by name (logged as ``zeroshot_{name}_acc``).
    """

    name: str
    retrieval: bool = True
    zeroshot: dict[str, ZeroShotSpec] = field(default_factory=dict)


@dataclass(frozen=True)
class ControlSpec:
    """An offline control dataset and the environment its policy is evaluated in.

    Attributes:
        env_id: gymnasium id the rollouts run in.
        context: K, timesteps per training segment (the model's window must equal it).
        state_dim: size of a state vector.
        act_dim: number of discrete actions, or size of a continuous action vector.
        discrete: actions are ids (True) or vectors (False).
        state_mean, state_std: ``(state_dim,)`` training-split statistics the tokenizer normalizes by.
        action_low, action_high: ``(act_dim,)`` bounds of continuous actions (None for discrete).
        ref_returns: (random, expert) returns; normalized score = 100 * (R - random) / (expert - random).
        dataset_returns: ``(E,)`` returns of the dataset's episodes (references in plots).
        target_returns: the returns to condition on at test/predict time, in the environment's scale.
        val_targets: the returns the validation rollouts condition on (empty = the first target return).
    """

    env_id: str
    context: int
    state_dim: int
    act_dim: int
    discrete: bool
    state_mean: Tensor
    state_std: Tensor
    ref_returns: tuple[float, float]
    dataset_returns: Tensor
    action_low: Tensor | None = None
    action_high: Tensor | None = None
    target_returns: tuple[float, ...] = ()
    val_targets: tuple[float, ...] = ()


@dataclass(frozen=True)
class DataSpec:
    """What a DataModule declares about its data; a field a DataModule does not have stays None.

    Attributes:
        class_names: classification labels in id order (their count is the number of classes).
        vocab: the vocabulary of the text a model writes (seq2seq targets) or reads as captions.
        source_vocab: the vocabulary of a text source (may be ``vocab`` itself), for plots.
        tokenize: strings → ``(B, T)`` padded ids in the form the text tower was trained on
            (zero-shot prompts).
        eval_splits: what each contrastive test split measures, in the order of the ``split``
            column of test batches.
        predict_names: a name per predict sample in dataset order (file paths), for prediction files.
        control: the control dataset's environment and statistics.
        target_ids: split name → ``(N, T)`` ids of the text ``target`` of every sample of that split, exactly as
            batched (bos + pieces + eos, right-padded with 0): what baselines fit on the same tokens read
            (the n-gram model a language model is compared with). Splits the stage did not set up raise KeyError.
        tasks: task name → that task's own spec, for several tasks trained at once
            (:class:`~mmformer.data.modules.multitask.MultiTaskData`); each child task binds its own.
    """

    class_names: Sequence[str] | None = None
    vocab: SentencePieceVocab | None = None
    source_vocab: SentencePieceVocab | None = None
    tokenize: Callable[[Sequence[str]], Tensor] | None = None
    eval_splits: Sequence[EvalSplit] | None = None
    predict_names: Sequence[str] | None = None
    control: ControlSpec | None = None
    target_ids: Callable[[str], Tensor] | None = None
    tasks: Mapping[str, DataSpec] | None = None

    def require(self, names: Sequence[str], provider: str, consumer: str) -> None:
        """Raises a ValueError naming every field in ``names`` that is None."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"{consumer} requires unknown data fields {unknown}; DataSpec has {sorted(known)}")
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"{consumer} needs {', '.join(missing)} from its data, but {provider} does not "
                             f"declare it: use a DataModule whose data_spec() provides it (subclass "
                             f"mmformer.data.spec.ProvidesDataSpec and return a DataSpec)")


class ProvidesDataSpec(abc.ABC):
    """Mixin of every mmformer DataModule: declares what a task must match (see :class:`DataSpec`)."""

    @abc.abstractmethod
    def data_spec(self) -> DataSpec:
        """The spec of the data as set up (called after ``setup(stage)``)."""
