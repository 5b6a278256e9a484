"""``ManifestData``: any pairing of modalities from a manifest of typed fields, mapped to a task's roles.

A recipe declares its manifest's fields (``fields``: name → type and decoding options, see
:mod:`mmformer.data.readers.manifest`) and maps the task's roles to them (``inputs``: role → field)::

    data:
      class_path: mmformer.data.ManifestData
      init_args:
        train: data/kw/train.jsonl
        val: data/kw/val.jsonl
        test: data/kw/test.jsonl
        fields:
          audio_filepath: {type: audio, sample_rate: 16000}
          keyword: {type: label}
        inputs: {input: audio_filepath, label: keyword}

Batches are dicts keyed by role, each value what the role's tokenizer takes:

=======  ==========================================================================================
type     batched as
=======  ==========================================================================================
image    ``(B, C, H, W)`` float, ``[0, 1]`` pixels normalized by the field's mean/std (default 0.5)
audio    :class:`~mmformer.tokenizers.audio.AudioBatch` ``(waveforms (B, L), lengths (B,))`` at the
         field's ``sample_rate`` (files at another rate are resampled)
text     ``(B, T)`` long ids + eos right-padded with 0; for the role ``target`` ``[bos] + ids + [eos]``;
         a text ``target`` (``source``, ``prompt``) also comes as ``target_text`` (``source_text``, ``prompt_text``): ``list[str]``
label    ``(B,)`` long class ids; number ``(B,)`` float; vector ``(B, D)`` float
=======  ==========================================================================================

plus ``index (B,)`` long (row positions in the split) and, when ``zeroshot`` is set, ``labels (B, K)``
long (the zero-shot label fields' class ids, in ``zeroshot`` order). ``extra_test`` adds contrastive test
splits measured in the same test run (zero-shot over a manifest of its own, say): test batches then also
carry ``split (B,)`` (see :mod:`mmformer.data.modules.manifest_evals`).

Every manifest the stage uses is read and checked in ``prepare_data``/``setup`` (fit also checks the
test manifest), so a bad row fails before the first step with an error naming the manifest, the line
and the field. Text, labels, numbers and vectors are encoded once at setup; image and audio files are
decoded per sample, in the DataLoader's workers. Training batches are length-bucketed when a role's
length varies (audio, text), resume exactly mid-epoch, and are sharded across DDP ranks; evaluation
shards are disjoint and unpadded.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from mmformer.data.common.batching import BucketBatchSampler, EvalBatchSampler, TokenBudgetBatchSampler
from mmformer.data.common.embedded import Builder, build_embedded, builder_name
from mmformer.data.common.full_batches import FullBucketBatchSampler
from mmformer.data.common.ids import Ragged, wrap_rows
from mmformer.data.common.loading import world_of
from mmformer.data.common.sampling import ResumableDataModule
from mmformer.data.modules.manifest_dataset import ManifestDataset, RoleValues
from mmformer.data.modules.manifest_evals import EvalSplitsDataset, ExtraTest, SplitEvalBatchSampler, parse_extra_test
from mmformer.data.modules.manifest_roles import TARGET_ROLES, check_roles
from mmformer.data.readers.manifest import (
    Column, FieldSpec, ManifestError, ManifestTable, label_classes, label_ids, parse_fields, read_column, read_table,
)
from mmformer.data.shards.reading import has_split, shard_table, split_uri, split_view
from mmformer.data.spec import DataSpec, EvalSplit, ProvidesDataSpec, ZeroShotSpec
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab

SPLITS = ("train", "val", "test", "predict")
FRAMES_PER_SECOND = 100  # an audio clip's bucketing length is its 10 ms frames


class ManifestData(ResumableDataModule, ProvidesDataSpec):
    """Samples of named, typed fields from JSONL/CSV/TSV manifests, batched by task role (module doc).

    Args:
        train, val, test, predict: manifests (``.jsonl``, ``.csv``, ``.tsv``); file paths inside resolve
            against the manifest's folder. ``val`` None: no validation; ``predict`` None: predict the test
            split. A predict manifest may lack the ``label``/``target`` fields.
        fields: manifest field → ``{type: image|audio|text|label|number|vector, <options>}``. Options:
            image ``size`` (64), ``channels`` (3), ``mean``/``std`` (0.5 each); audio ``sample_rate``
            (16000); text ``max_len`` (128 ids, bos/eos included; longer texts are cut, with a warning);
            label ``classes`` (default: the training split's labels, sorted); vector ``dim`` (required).
        inputs: task role → field (roles: ``input``/``label`` classification, ``source``/``target``
            sequence-to-text, ``a``/``b`` contrastive towers).
        embedded: a corpus builder ``build(data_dir) -> {split: manifest path}`` by dotted path, or a builder
            class with its settings (``class_path``/``init_args``; :mod:`mmformer.data.common.embedded`), called
            in ``prepare_data`` (cached by the builder) to fill the splits left None; only when ``train`` is None.
        data_dir: where the embedded data and the text vocabulary are cached.
        vocab_size: pieces of the sentencepiece model trained on the training split's text fields that roles
            read (they share it; cached under ``data_dir/tokenizers``); None = the size the rule of
            :mod:`mmformer.tokenizers.vocab_rules` gives the training text (printed).
        vocab_model: a trained sentencepiece ``.model`` to use instead (pad/unk/bos/eos = 0/1/2/3).
        vocab_model_type: sentencepiece algorithm (``bpe``, ``unigram``, ``char``, ``word``).
        byte_fallback: unseen characters encode as byte pieces (costs 256 ids) instead of ``<unk>``.
        batch_size: samples per batch (training and evaluation).
        max_tokens: or a padded-length budget per training batch, ``B × longest``, where a text's length
            is its ids and an audio clip's its 10 ms frames (needs a role whose length varies).
        bucket_batches: batches per length-sorting window of the training sampler.
        drop_last: training epochs keep only full batches (contrastive losses want equal batches).
        zeroshot: label field → prompt templates (``{}`` = class name): the contrastive test also measures
            zero-shot accuracy over that field's classes through tower ``b`` (``test/zeroshot_<field>_acc``).
        extra_test: more contrastive test manifests, name → ``{path, retrieval, zeroshot, fields, prefix}``,
            measured by the same ``test`` (e.g. zero-shot accuracy over a manifest of isolated words); a split
            without ``path`` is the embedded builder's split of that name. See
            :mod:`mmformer.data.modules.manifest_evals`.
        num_workers: DataLoader worker processes (they decode the image/audio files).
        seed: training order; epoch ``e``'s order depends only on (seed, e).
        shards: read ``<shards>/{train,val,test}`` prepared by ``mmformer prepare manifest`` (a folder or an
            ``s3://``/``gs://``... URI) instead of ``train``/``val``/``test``: the small fields are read in
            ``setup`` as from the manifests, image/audio files are decoded per sample from the shards.
    """

    _resume_unit = "batches"  # bucketed batches vary in size

    def __init__(
        self,
        fields: dict[str, dict[str, Any]],
        inputs: dict[str, str],
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        predict: str | None = None,
        embedded: Builder | str | None = None,
        data_dir: str = "data",
        vocab_size: int | None = None,
        vocab_model: str | None = None,
        vocab_model_type: Literal["bpe", "unigram", "char", "word"] = "bpe",
        byte_fallback: bool = False,
        batch_size: int = 32,
        max_tokens: int | None = None,
        bucket_batches: int = 50,
        drop_last: bool = False,
        zeroshot: dict[str, list[str]] | None = None,
        extra_test: dict[str, dict[str, Any]] | None = None,
        num_workers: int = 0,
        seed: int = 0,
        shards: str | None = None,
    ) -> None:
        super().__init__()
        self.fields = parse_fields(fields)
        self.inputs = dict(inputs)
        self.zeroshot = dict(zeroshot or {})
        check_roles(self.fields, self.inputs, self.zeroshot)
        if batch_size < 1 or (max_tokens is not None and max_tokens < 1):
            raise ValueError(f"batch_size and max_tokens must be positive, got {batch_size} and {max_tokens}")
        if shards is not None and (train or val or test or embedded):
            raise ValueError("give data.init_args.shards or the manifests (train/val/test/embedded), not both")
        if train is None and embedded is None and shards is None:
            raise ValueError("set data.init_args.train (a manifest), data.init_args.embedded (a builder) or "
                             "data.init_args.shards")
        self.shards = shards
        if shards is not None:  # <shards>/train is required (checked in setup); val/test when prepared
            train = split_uri(shards, "train")
            val, test = (split_uri(shards, s) if has_split(shards, s) else None for s in ("val", "test"))
        self.paths: dict[str, str | None] = {"train": train, "val": val, "test": test, "predict": predict}
        self.extra: list[ExtraTest] = parse_extra_test(extra_test, self.fields, self.inputs, self.zeroshot, SPLITS,
                                                       embedded, embedded is not None and train is None)
        self.paths.update({e.name: e.path for e in self.extra})
        self.embedded, self.data_dir = embedded, Path(data_dir)
        self.vocab_size, self.vocab_model, self.vocab_model_type = vocab_size, vocab_model, vocab_model_type
        self.byte_fallback, self.batch_size, self.max_tokens = byte_fallback, batch_size, max_tokens
        self.bucket_batches, self.drop_last, self.num_workers, self.seed = bucket_batches, drop_last, num_workers, seed
        self.vocab: SentencePieceVocab | None = None
        self.classes: dict[str, list[str]] = {}
        self._extra_classes: dict[tuple[str, str], list[str]] = {}
        self.datasets: dict[str, ManifestDataset] = {}
        self._tables: dict[str, ManifestTable] = {}
        self._columns: dict[tuple[str, str], Column] = {}
        self._built = False

    # --- reading -------------------------------------------------------------------------------
    def _path(self, split: str) -> str | None:
        if self.paths["train"] is None and not self._built:  # the embedded builder fills the splits left None
            built = build_embedded(self.embedded, self.data_dir)  # type: ignore[arg-type]
            fill = [*SPLITS, *(e.name for e in self.extra)]
            self.paths.update({s: str(p) for s, p in built.items() if s in fill and self.paths.get(s) is None})
            self._built = True
            for e in self.extra:
                if self.paths[e.name] is None:
                    raise ManifestError(f"extra_test.{e.name}: builder {builder_name(self.embedded)} returned no "
                                        f"{e.name!r} split (got {sorted(built)}); set extra_test.{e.name}.path")
        return self.paths[split]

    def _column(self, split: str, name: str) -> Column:
        """A field of a split, read and checked once."""
        if (split, name) not in self._columns:
            if split not in self._tables:
                self._tables[split] = self._read_table(split)
            self._columns[split, name] = read_column(self._tables[split], self._fields_of(split)[name])
        return self._columns[split, name]

    def _read_table(self, split: str) -> ManifestTable:
        """A split's rows: from its manifest, or from its shards (files stay there, see :func:`shard_table`)."""
        if self.shards is not None and split in ("train", "val", "test"):
            return shard_table(split_view(self.shards, split, "manifest"))
        return read_table(self._path(split))  # type: ignore[arg-type]

    def _extra(self, split: str) -> ExtraTest | None:
        return next((e for e in self.extra if e.name == split), None)

    def _fields_of(self, split: str) -> dict[str, FieldSpec]:
        """The declared fields, plus an extra test split's own."""
        extra = self._extra(split)
        return {**self.fields, **extra.fields} if extra else self.fields

    def _needed_fields(self, split: str) -> list[str]:
        """Every declared field, except that a predict manifest needs only the roles' inputs and an extra test
        manifest the roles', its own and its zero-shot labels."""
        if split == "predict":
            return [f for r, f in self.inputs.items() if r not in TARGET_ROLES]
        extra = self._extra(split)
        if extra is not None:
            return list(dict.fromkeys([*self.inputs.values(), *extra.fields, *extra.zeroshot]))
        return list(self.fields)

    def _stage_splits(self, stage: str | None) -> list[str]:
        eval_split = "predict" if self._path("predict") is not None else "test"
        tests = ["test", *(e.name for e in self.extra)]
        wanted = {"fit": ["train", "val", *tests], "validate": ["val"], "test": tests, "predict": [eval_split]}
        splits = [s for s in wanted.get(stage or "", ["train", "val", *tests]) if self._path(s) is not None]
        if self.extra and "test" not in splits and (stage in ("fit", "test") or stage is None):
            raise ManifestError("extra_test measures splits beside the main test split: set data.init_args.test")
        return splits

    def _check(self, splits: Sequence[str]) -> None:
        """Reads every field the splits need (so a bad row fails now), then the training text and labels."""
        for split in splits:
            for name in self._needed_fields(split):
                self._column(split, name)
        for name in self._text_fields():  # what every stage takes from the training split
            self._column("train", name)
        for name, spec in self.fields.items():
            if spec.type == "label" and spec["classes"] is None:
                self._column("train", name)

    def _text_fields(self) -> list[str]:
        """The text fields the roles read: the vocabulary is trained on them (a declared text field no role
        reads is checked, not learnt)."""
        return sorted({n for n in self.inputs.values() if self.fields[n].type == "text"})

    def _vocab_prefix(self) -> Path:
        text = self._text_fields()
        key = json.dumps([str(Path(self._path("train")).resolve()), text, self.vocab_size,  # type: ignore[arg-type]
                          self.vocab_model_type, self.byte_fallback])
        stem = Path(self._path("train")).stem  # type: ignore[arg-type]
        return self.data_dir / "tokenizers" / f"manifest-{stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"

    def _load_vocab(self) -> SentencePieceVocab | None:
        text = self._text_fields()
        if not text:
            return None
        if self.vocab_model is not None:
            return SentencePieceVocab(self.vocab_model)
        texts = [t for n in text for t in self._column("train", n).values]  # type: ignore[union-attr]
        vocab = SentencePieceVocab.train(texts, self._vocab_prefix(), self.vocab_size,
                                         model_type=self.vocab_model_type, byte_fallback=self.byte_fallback)
        if self.vocab_size is not None and vocab.vocab_size != self.vocab_size:
            raise ValueError(f"the text vocabulary has {vocab.vocab_size} pieces, not vocab_size={self.vocab_size}")
        return vocab

    def prepare_data(self) -> None:
        """Builds the embedded data (when configured), checks the stage's manifests and trains the text
        vocabulary once (rank 0; cached on disk)."""
        fn = self.trainer.state.fn if self.trainer is not None else None
        self._check(self._stage_splits(fn.value if fn is not None else None))
        self._load_vocab()

    def setup(self, stage: str | None = None) -> None:
        """Checks the stage's manifests, loads the vocabulary and class lists, and encodes each split once."""
        self._stage = stage
        splits = self._stage_splits(stage)
        self._check(splits)
        if self.vocab is None:
            self.vocab = self._load_vocab()
        for name, spec in self.fields.items():
            if spec.type == "label" and name not in self.classes:
                self.classes[name] = spec["classes"] or label_classes(self._column("train", name).values)  # type: ignore[arg-type]
        for e in self.extra:  # an extra split's own labels: its listed classes, else its own values sorted
            for name, spec in e.fields.items():
                if spec.type == "label" and (e.name, name) not in self._extra_classes and e.name in splits:
                    self._extra_classes[e.name, name] = (spec["classes"] or  # type: ignore[arg-type]
                                                         label_classes(self._column(e.name, name).values))
        for split in splits:
            if split not in self.datasets:
                self.datasets[split] = self._dataset(split)

    # --- encoding ------------------------------------------------------------------------------
    def _role_values(self, split: str, role: str, name: str) -> RoleValues:
        col, spec = self._column(split, name), self.fields[name]
        if spec.type == "image":
            return RoleValues(spec, col.values)
        if spec.type == "audio":
            frames = (col.durations * FRAMES_PER_SECOND).ceil().long()  # type: ignore[union-attr]
            return RoleValues(spec, col.values, lengths=frames)
        if spec.type == "text":
            return self._encode_text(split, role, col)
        if spec.type == "label":
            return RoleValues(spec, label_ids(self._tables[split], col, self._classes(split, name), split))
        return RoleValues(spec, col.values)  # number (N,), vector (N, D)

    def _encode_text(self, split: str, role: str, col: Column) -> RoleValues:
        assert self.vocab is not None
        texts: list[str] = col.values  # type: ignore[assignment]
        bos, max_len = role == "target", col.spec["max_len"]
        rows = self.vocab.encode(texts)
        over = [i for i, r in enumerate(rows) if len(r) > max_len - 1 - int(bos)]
        if over:
            where = self._tables[split].where(over[0], col.spec.name)
            warnings.warn(f"{split}: cut {len(over)} text(s) of field {col.spec.name!r} to max_len={max_len} ids "
                          f"(first at {where}); raise the field's max_len to keep them whole", stacklevel=2)
        ids = wrap_rows(rows, bos, max_len)
        return RoleValues(col.spec, ids, texts, ids.lengths)

    def _classes(self, split: str, name: str) -> list[str]:
        return self._extra_classes.get((split, name)) or self.classes[name]

    def _label_columns(self) -> list[tuple[str | None, str]]:
        """The columns of test batches' ``labels``: (None, field) for the main ``zeroshot`` fields, then
        (extra split, field) for each extra test split's."""
        return [(None, n) for n in self.zeroshot] + [(e.name, n) for e in self.extra for n in e.zeroshot]

    def _labels(self, split: str) -> Tensor | None:
        """``(N, K)`` zero-shot class ids of a split (-1 in the columns of other splits), or None."""
        table, extra = self._tables[split], self._extra(split) is not None
        columns = self._label_columns() if split == "test" or extra else [(None, n) for n in self.zeroshot]
        if not columns or split == "predict":
            return None
        out = torch.full((len(table), len(columns)), -1, dtype=torch.long)
        for k, (owner, name) in enumerate(columns):
            if owner == split or (owner is None and not extra):
                out[:, k] = label_ids(table, self._column(split, name), self._classes(split, name), split)
        return out

    def _dataset(self, split: str) -> ManifestDataset:
        table = self._tables[split]
        roles = {role: self._role_values(split, role, name) for role, name in self.inputs.items()
                 if name in self._needed_fields(split)}
        return ManifestDataset(roles, [f"{table.path}:{line}" for line in table.lines], self._labels(split))

    # --- loaders -------------------------------------------------------------------------------
    def _split_dataset(self, split: str) -> ManifestDataset:
        if split not in self.datasets:
            raise ValueError(f"no {split} data: set data.init_args.{split} to a manifest (and call setup first)")
        return self.datasets[split]

    def train_dataloader(self) -> DataLoader:
        ds = self._split_dataset("train")
        world, rank = world_of(self.trainer)
        lengths = ds.lengths()
        sampler: BucketBatchSampler | TokenBudgetBatchSampler
        if self.max_tokens is not None and lengths is not None:
            sampler = TokenBudgetBatchSampler(lengths, self.max_tokens, self.seed, world, rank)
        else:
            cls = FullBucketBatchSampler if self.drop_last else BucketBatchSampler
            sampler = cls(lengths if lengths is not None else torch.zeros(len(ds)), self.batch_size, True,
                          self.seed, world, rank, self.bucket_batches)
        return self._batch_loader(ds, sampler, train=True)

    def _eval_loader(self, split: str, sort: bool = True) -> DataLoader:
        """Disjoint, unpadded shards (rank ``r`` of ``w`` takes samples ``r::w``), longest first (less
        padding) or, for prediction, in manifest order."""
        ds = self._split_dataset(split)
        world, rank = world_of(self.trainer)
        return self._batch_loader(ds, EvalBatchSampler(len(ds), self.batch_size, ds.lengths() if sort else None,
                                                       world, rank))

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader("val") if self._path("val") is not None else []  # no val manifest: no validation

    def test_dataloader(self) -> DataLoader:
        """The test split's batches, then each extra test split's (batches carry ``split`` then)."""
        if not self.extra:
            return self._eval_loader("test")
        ds = EvalSplitsDataset([self._split_dataset(s) for s in ("test", *(e.name for e in self.extra))])
        return self._batch_loader(ds, SplitEvalBatchSampler(ds, self.batch_size, *world_of(self.trainer)))

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict" if "predict" in self.datasets else "test", sort=False)

    # --- what a task must match -----------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """Strings → ``(B, T)`` ids + eos right-padded with 0, as a text tower reads them (zero-shot prompts)."""
        if self.vocab is None:
            raise RuntimeError("no text vocabulary: declare a text field and call setup() first")
        text_roles = [r for r, n in self.inputs.items() if self.fields[n].type == "text" and r != "target"]
        name = self.inputs[sorted(text_roles, key=lambda r: r != "b")[0]] if text_roles else None
        max_len = self.fields[name]["max_len"] if name else 128
        return self.vocab.batch(list(texts), bos=False, eos=True, max_len=max_len)

    def _predict_names(self) -> list[str] | None:
        split = "predict" if "predict" in self.datasets else "test"
        if getattr(self, "_stage", None) != "predict" or split not in self.datasets:
            return None
        ds = self.datasets[split]
        files = [rv for r, rv in ds.roles.items() if rv.spec.type in ("image", "audio") and r not in TARGET_ROLES]
        return [str(f) for f in files[0].values] if files else list(ds.names)  # type: ignore[union-attr]

    def data_spec(self) -> DataSpec:
        """``class_names`` (the ``label`` role's classes), ``vocab`` (the text fields' model), ``source_vocab``
        (when ``source`` is text), ``tokenize`` (prompts for a text tower), ``eval_splits`` (retrieval over
        the test pairs, plus zero-shot by the ``zeroshot`` label fields; then each ``extra_test`` split) and, when predicting,
        ``predict_names`` (the input files, else ``manifest:line``)."""
        label = self.inputs.get("label")
        source = self.inputs.get("source")
        columns = {key: k for k, key in enumerate(self._label_columns())}

        def zeroshot(split: str, prompts: dict[str, list[str]], owner: str | None = None) -> dict[str, ZeroShotSpec]:
            return {n: ZeroShotSpec(columns[owner, n], self._extra_classes.get((split, n)) or self.classes.get(n, []),
                                    t) for n, t in prompts.items()}
        return DataSpec(
            class_names=self.classes.get(label) if label else None,
            vocab=self.vocab,
            source_vocab=self.vocab if source and self.fields[source].type == "text" else None,
            tokenize=self.tokenize if self.vocab is not None else None,
            eval_splits=[EvalSplit("", retrieval=True, zeroshot=zeroshot("test", self.zeroshot)),
                         *(EvalSplit(e.prefix, e.retrieval, zeroshot(e.name, e.zeroshot, e.name)) for e in self.extra)],
            predict_names=self._predict_names(),
            target_ids=self.target_ids if "target" in self.inputs else None,
        )

    def target_ids(self, split: str) -> Tensor:
        """``(N, T)`` the ``target`` role's ids of a set-up split, as batched (bos + pieces + eos, pad 0)."""
        if split not in self.datasets or "target" not in self.datasets[split].roles:
            raise KeyError(f"no {split} targets: the split is not set up for this stage (or has no target)")
        ids = self.datasets[split].roles["target"].values
        assert isinstance(ids, Ragged)
        return ids.pad(torch.arange(len(ids.lengths)))
