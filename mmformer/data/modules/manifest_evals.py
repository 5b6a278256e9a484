"""Extra evaluation manifests of :class:`~mmformer.data.modules.manifest.ManifestData`: more contrastive test
splits measured in the same ``mmformer test`` as the main test pool.

A recipe names each extra split, where its manifest is and what the contrastive task measures on it::

    extra_test:
      zeroshot:                        # split name (the embedded builder's split of that name when no path)
        path: data/clips/words.jsonl   # optional with an embedded builder
        retrieval: false               # recall@k over its pairs (default true)
        zeroshot: {keyword: ["{}", "the word {}"]}   # label field → prompts, through tower b
        fields:                        # fields only this manifest has (added to data.init_args.fields)
          keyword: {type: label}       # classes: this split's own labels, sorted, unless listed
        prefix: ""                     # metric prefix (default ""): test/<prefix>a2t_r@1, test/<prefix>zeroshot_keyword_acc

The test loader then yields the main test split's batches and each extra split's, in that order; a batch
never mixes splits and carries ``split (B,)`` (its index into the data spec's ``eval_splits``) and ``labels
(B, K)`` (one column per zero-shot field of every split, -1 where a split has no such label), as the
contrastive DataModules of images and captions do.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch.utils.data import Dataset

from mmformer.data.common.batching import EvalBatchSampler
from mmformer.data.modules.manifest_dataset import ManifestDataset
from mmformer.data.readers.manifest import FieldSpec, ManifestError, parse_fields

OPTIONS = ("path", "prefix", "retrieval", "zeroshot", "fields")
RETRIEVAL = [f"{d}_r@{k}" for d in ("a2b", "b2a") for k in (1, 5, 10)]  # one name per metric (towers' initials aside)


@dataclass(frozen=True)
class ExtraTest:
    """One extra contrastive test split (see the module docstring for the YAML).

    Attributes:
        name: the split's name (a key of ``extra_test``; the embedded builder's split when ``path`` is None).
        path: its manifest, or None until the embedded builder fills it.
        prefix: its metric prefix.
        retrieval: recall@k over its pairs.
        zeroshot: label field → prompt templates.
        fields: fields only this manifest declares.
    """

    name: str
    path: str | None
    prefix: str = ""
    retrieval: bool = True
    zeroshot: dict[str, list[str]] = field(default_factory=dict)
    fields: dict[str, FieldSpec] = field(default_factory=dict)


def parse_extra_test(config: Mapping[str, Mapping[str, Any]] | None, fields: Mapping[str, FieldSpec],
                     inputs: Mapping[str, str], zeroshot: Mapping[str, Any], splits: Sequence[str],
                     embedded: object, builder_used: bool) -> list[ExtraTest]:
    """Checks ``extra_test`` (name → options) against the recipe and returns the splits in order.

    A split without ``path`` is the embedded corpus's: when the recipe's corpus is replaced by manifests of
    one's own (``train`` set), it is left out, with a warning saying how to measure it.

    Args:
        config: the ``extra_test`` mapping, or None.
        fields: the recipe's declared fields; inputs: its role → field mapping.
        zeroshot: the main test split's zero-shot fields (their metric names must stay distinct).
        splits: the standard split names (an extra split may not reuse one).
        embedded: the recipe's embedded builder (or its dotted path), or None.
        builder_used: the builder fills the splits (``train`` is unset).

    Raises:
        ManifestError: an unknown option, a reused name, a missing path, a split that measures nothing, a
            field that clashes or is not a label, roles other than the contrastive ``a``/``b``, or two
            splits logging the same metric name.
    """
    if not config:
        return []
    if set(inputs) != {"a", "b"}:
        raise ManifestError(f"extra_test adds contrastive test splits: map inputs to the roles a and b, not "
                            f"{sorted(inputs)}")
    names = {f"zeroshot_{n}_acc" for n in zeroshot} | set(RETRIEVAL)  # the main split's metric names
    out = []
    for name, cfg in config.items():
        where = f"extra_test.{name}"
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - set(OPTIONS))
        if unknown:
            raise ManifestError(f"{where}: unknown option(s) {unknown}; it takes {list(OPTIONS)}")
        if name in splits:
            raise ManifestError(f"{where}: {name!r} is a standard split; give the extra split another name")
        if cfg.get("path") is None and embedded is None:
            raise ManifestError(f"{where}: set path (a manifest); only an embedded builder (data.init_args.embedded "
                                f"with train unset) fills a split without one")
        if cfg.get("path") is None and not builder_used:
            warnings.warn(f"{where} is the embedded corpus's {name!r} split, but data.init_args.train replaces "
                          f"that corpus: {name!r} is not measured (set {where}.path to a manifest of yours to "
                          f"measure it, or extra_test: null to silence this)", stacklevel=3)
            continue
        own = parse_fields(cfg["fields"]) if cfg.get("fields") else {}
        clash = sorted(set(own) & set(fields))
        if clash:
            raise ManifestError(f"{where}.fields: {clash} already declared in data.init_args.fields; declare "
                                f"only the fields this manifest adds")
        known = {**fields, **own}
        prompts = {str(k): [str(t) for t in v] for k, v in dict(cfg.get("zeroshot") or {}).items()}
        for label, templates in prompts.items():
            if label not in known or known[label].type != "label":
                raise ManifestError(f"{where}.zeroshot: {label!r} is not a label field of this split (labels: "
                                    f"{sorted(n for n, f in known.items() if f.type == 'label')})")
            if not templates or any("{}" not in t for t in templates):
                raise ManifestError(f"{where}.zeroshot.{label}: give prompts with {{}} for the class name, "
                                    f"e.g. ['{{}}', 'the word {{}}']")
        split = ExtraTest(name, cfg.get("path"), str(cfg.get("prefix", "")), bool(cfg.get("retrieval", True)),
                          prompts, own)
        if not split.retrieval and not split.zeroshot:
            raise ManifestError(f"{where} measures nothing: set retrieval: true or zeroshot: {{<label field>: "
                                f"[prompts]}}")
        logged = {f"{split.prefix}zeroshot_{n}_acc" for n in prompts} | (
            {f"{split.prefix}{m}" for m in RETRIEVAL} if split.retrieval else set())
        if logged & names:
            raise ManifestError(f"{where} would log {sorted(logged & names)} a second time (as another test "
                                f"split does): give it a metric prefix, e.g. prefix: {name}_")
        names |= logged
        out.append(split)
    return out


class EvalSplitsDataset(Dataset):
    """Several evaluation splits behind one index; ``dataset[indices]`` (all of one split) is that split's
    batch plus ``split (B,)`` long, the split's position in ``parts``.

    Args:
        parts: the splits' datasets, in the order of the data spec's ``eval_splits``.
    """

    def __init__(self, parts: Sequence[ManifestDataset]) -> None:
        self.parts = list(parts)
        self.offsets = [0]
        for part in self.parts:
            self.offsets.append(self.offsets[-1] + len(part))

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, indices: Sequence[int]) -> dict[str, Any]:
        idx = [int(i) for i in indices]
        k = max(p for p in range(len(self.parts)) if self.offsets[p] <= idx[0])
        if not all(self.offsets[k] <= i < self.offsets[k + 1] for i in idx):
            raise ValueError(f"a batch of {len(idx)} rows spans several evaluation splits; batch with "
                             f"SplitEvalBatchSampler")
        batch = self.parts[k][[i - self.offsets[k] for i in idx]]  # `index` stays the row within its split
        batch["split"] = torch.full((len(idx),), k, dtype=torch.long)
        return batch


class SplitEvalBatchSampler(EvalBatchSampler):
    """:class:`EvalBatchSampler` over each split in turn (disjoint, unpadded shards per split, longest first):
    batch indices address an :class:`EvalSplitsDataset` and never span two splits.

    Args:
        dataset: the splits behind one index.
        batch_size: rows per batch.
        num_replicas, rank: DDP world size and this process's rank.
    """

    def __init__(self, dataset: EvalSplitsDataset, batch_size: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(len(dataset), batch_size, None, num_replicas, rank)
        self.batches = []
        for part, offset in zip(dataset.parts, dataset.offsets):
            shard = EvalBatchSampler(len(part), batch_size, part.lengths(), num_replicas, rank)
            self.batches += [[offset + i for i in b] for b in shard.batches]
