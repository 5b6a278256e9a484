"""Speech-recognition DataModule: NeMo-style JSONL manifests or an embedded corpus builder's splits,
length-bucketed batches, optional waveform augmentation (:mod:`mmformer.data.common.wave_augment`), and
the batches :class:`~mmformer.tasks.seq2seq.Seq2SeqTask` consumes.

A batch is ``{"source": AudioBatch(waveforms (B, L), lengths (B,)), "target": (B, T) long =
bos + pieces + eos right-padded with 0, "target_text": [...], "id": [...]}``.

Bad input is handled up front, in ``setup``: a missing audio file is an error naming its
manifest line; clips outside ``[min_duration, max_duration]`` are dropped (with a warning that
counts them); an utterance whose ``text`` is empty (after normalization) is dropped from every
split with a warning that counts them and names the first manifest line (it would train the
target ``[bos, eos]`` and score an empty reference); a transcript with characters the vocabulary
lacks raises (``unknown_chars: error``), is dropped (``skip``) or keeps ``<unk>`` pieces (``unk``).
Stereo audio is averaged to mono, and any sample rate is resampled to ``sample_rate``; an empty
or silent clip yields one silent frame.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mmformer.data.common.batching import BucketBatchSampler
from mmformer.data.common.embedded import Builder, build_embedded
from mmformer.data.common.ids import Ragged, wrap_rows
from mmformer.data.common.loading import world_of
from mmformer.data.common.packing import MarkPacked
from mmformer.data.common.sampling import ResumableDataModule
from mmformer.data.common.wave_augment import WaveAugment
from mmformer.data.readers.audio import AudioFileError, ManifestEntry, load_audio, read_manifest
from mmformer.data.shards.reading import ShardFile, read_columns, split_view
from mmformer.data.spec import DataSpec, ProvidesDataSpec
from mmformer.tokenizers.audio import AudioBatch
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab

Units = Literal["bpe", "unigram", "char", "word"]


def normalize_text(text: str) -> str:
    """Lower case, single spaces: the form transcripts are trained and scored in."""
    return " ".join(text.lower().split())


class SpeechDataset(Dataset):
    """Utterances by index; ``dataset[list of indices]`` returns a collated batch (see module doc).

    Audio comes either from one concatenated int16 array (``audio`` + ``offsets`` + ``lengths``,
    the embedded corpus) or from files (``files``), read and resampled on demand.

    Args:
        ids, texts: per utterance; texts may be empty strings (prediction).
        targets: ``[bos] + pieces + [eos]`` rows (see :func:`encode_targets`), or None.
        durations: ``(N,)`` seconds.
        sample_rate: output rate (files are resampled to it).
    """

    def __init__(self, ids: list[str], texts: list[str], targets: Ragged | None, durations: Tensor,
                 sample_rate: int, audio: np.ndarray | None = None, offsets: Tensor | None = None,
                 lengths: Tensor | None = None, files: list[str] | None = None,
                 augment: WaveAugment | None = None, seed: int = 0) -> None:
        if (audio is None) == (files is None):
            raise ValueError("give either audio/offsets/lengths or files")
        self.ids, self.texts, self.targets, self.durations = ids, texts, targets, durations
        self.sample_rate, self.audio, self.offsets, self.lengths, self.files = sample_rate, audio, offsets, lengths, files
        self.augment, self.seed = augment, seed

    def __len__(self) -> int:
        return len(self.ids)

    def _waveforms(self, idx: Tensor) -> AudioBatch:
        if self.audio is not None:
            assert self.offsets is not None and self.lengths is not None
            lengths = self.lengths[idx]
            width = max(1, int(lengths.max()))
            steps = torch.arange(width)
            pos = (self.offsets[idx, None] + steps).clamp_max(len(self.audio) - 1)  # (B, L) sample indices
            wave = torch.from_numpy(self.audio[pos.numpy()].astype(np.float32)) / 32768.0
            return AudioBatch(wave * (steps < lengths[:, None]), lengths)
        waves = [self._load(i) for i in idx.tolist()]
        lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
        wave = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True) if waves else torch.zeros(0, 1)
        return AudioBatch(wave if wave.shape[1] else torch.zeros(len(waves), 1), lengths)

    def _load(self, i: int) -> Tensor:
        """Utterance ``i``'s file decoded; a decoding error names the utterance (``manifest:line``) too."""
        try:
            return load_audio(self.files[i], self.sample_rate)  # type: ignore[index]
        except AudioFileError as err:
            raise AudioFileError(f"{self.ids[i]}: {err}") from None

    def _augmented(self, audio: AudioBatch, virtual: Tensor) -> AudioBatch:
        """Each utterance through ``augment``, seeded by ``seed`` + its virtual index (which counts epochs)."""
        assert self.augment is not None
        waves = [self.augment(w[:n], self.seed + v) for w, n, v in
                 zip(audio.waveforms, audio.lengths.tolist(), virtual.tolist())]
        lengths = torch.tensor([len(w) for w in waves], dtype=torch.long)
        return AudioBatch(torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), lengths)

    def __getitem__(self, indices: int | Sequence[int]) -> dict[str, Any]:
        """Indices ``v >= N`` are virtual (epoch * N + i, from a sampler built with ``virtual=True``): utterance
        ``v % N``, augmented (when ``augment`` is set) with the seed of ``v``."""
        virtual = torch.as_tensor([indices] if isinstance(indices, int) else list(indices), dtype=torch.long)
        idx = virtual % len(self.ids)
        audio = self._waveforms(idx)
        batch: dict[str, Any] = {"source": audio if self.augment is None else self._augmented(audio, virtual),
                                 "id": [self.ids[i] for i in idx.tolist()],
                                 "target_text": [self.texts[i] for i in idx.tolist()]}
        if self.targets is not None:
            batch["target"] = self.targets.pad(idx)  # (B, T) bos + pieces + eos, pad 0
        return batch


def encode_targets(vocab: SentencePieceVocab, texts: list[str], max_len: int) -> Ragged:
    """Transcripts → ``[bos] + pieces + [eos]`` rows of at most ``max_len`` ids (longer ones are cut)."""
    return wrap_rows(vocab.encode(texts), True, max_len)


class SpeechRecognitionData(ResumableDataModule, ProvidesDataSpec):
    """Speech-recognition data: NeMo manifests, or the splits of an embedded corpus builder.

    Args:
        data_dir: where the embedded corpus and the trained vocabulary are cached.
        train, val, test: NeMo-style JSONL manifests (WAV/FLAC files, any rate/channels).
        embedded: with ``train`` None, a corpus builder (:mod:`mmformer.data.common.embedded`; the recipe's is
            ``corpora.speech.SpeechCorpus``) whose ``{split}.jsonl`` rows (``id``, ``text``, ``duration``,
            ``offset``, ``num_samples``) index int16 16 kHz clips in ``{split}.npy`` beside them.
        units: sentencepiece model type of the output units (``bpe``, ``unigram``, ``char``, ``word``).
        vocab_size: pieces in the vocabulary (special ids included; ``char`` takes what it needs); None = the
            size the vocabulary rule gives the training transcripts (:mod:`mmformer.tokenizers.vocab_rules`).
        batch_size: utterances per batch (batches are length-bucketed).
        bucket_batches: batches per sorting window of the bucketing sampler.
        sample_rate: rate the model hears; every clip is resampled to it.
        min_duration, max_duration: clips outside this range (seconds) are dropped, with a warning.
        max_target_len: longest target in pieces, bos/eos included (longer ones are cut).
        unknown_chars: a transcript with characters the vocabulary lacks: ``error``, ``skip`` or ``unk``.
        num_workers: DataLoader worker processes.
        augment: waveform augmentation of the training clips (speed perturbation, reverberation, additive
            noise: :class:`~mmformer.data.common.wave_augment.WaveAugment`), seeded per utterance and epoch
            so resume stays exact; None = the clips as they are (the default).
        eval_augment: the same perturbations applied to the validation and test clips, seeded per utterance
            (the same every evaluation): to measure a model under reverberation or noise it was not trained on.
        pack_len: pack each training batch's samples into rows of at most this many tokens (per side:
            source and target), each attending only within itself (:mod:`mmformer.data.common.packing`);
            no compute is spent on padding. None = padded batches (the default). Losses are unchanged.
        seed: shuffling seed.
        predict_files: audio files ``mmformer predict`` transcribes (in this order).
        predict: or a manifest of them (``text`` optional).
        shards: read ``<shards>/{train,val,test}`` prepared by ``mmformer prepare nemo`` (a folder or an
            ``s3://``/``gs://``... URI) instead of manifests: transcripts and durations are read in ``setup``
            (vocabulary, filtering, bucketing), clips are decoded per batch in the workers.
    """

    _resume_unit = "batches"  # token/length-bucketed batches vary in size
    # options of earlier versions: a run's old config.yaml names its new place (cli/errors.py)
    renamed_args: ClassVar[dict[str, str]] = {
        "train_manifest": "train", "val_manifest": "val", "test_manifest": "test", "predict_manifest": "predict",
        "synth_workers": "embedded.init_args.workers",
        **{k: f"embedded.init_args.{k}" for k in ("num_train", "num_val", "num_test", "heldout_synthesizer",
                                                  "festival_fraction")}}

    def __init__(
        self,
        data_dir: str = "data",
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        embedded: Builder | str | None = None,
        units: Units = "bpe",
        vocab_size: int | None = None,
        batch_size: int = 32,
        bucket_batches: int = 50,
        sample_rate: int = 16000,
        min_duration: float = 0.1,
        max_duration: float = 20.0,
        max_target_len: int = 128,
        unknown_chars: Literal["error", "skip", "unk"] = "error",
        num_workers: int = 0,
        augment: WaveAugment | None = None,
        eval_augment: WaveAugment | None = None,
        pack_len: int | None = None,
        seed: int = 0,
        predict_files: list[str] | None = None,
        predict: str | None = None,
        shards: str | None = None,
    ) -> None:
        super().__init__()
        manifests = (train, val, test)
        if any(manifests) and not all(manifests):
            raise ValueError("give data.init_args.train, val and test together (or none: the embedded corpus)")
        if shards is not None and train is not None:
            raise ValueError("give shards or the manifests, not both")
        if unknown_chars not in ("error", "skip", "unk"):
            raise ValueError(f"unknown_chars must be error, skip or unk, got {unknown_chars!r}")
        self.data_dir, self.manifests = Path(data_dir), manifests if all(manifests) else None
        self.embedded = embedded
        self._built: dict[str, Any] | None = None  # what the builder returned
        self.seed = seed
        self.units, self.vocab_size, self.batch_size, self.bucket_batches = units, vocab_size, batch_size, bucket_batches
        self.sample_rate, self.min_duration, self.max_duration = sample_rate, min_duration, max_duration
        self.max_target_len, self.unknown_chars, self.num_workers = max_target_len, unknown_chars, num_workers
        self.pack_len = pack_len
        for name, aug in (("augment", augment), ("eval_augment", eval_augment)):
            if aug is not None and aug.sample_rate != sample_rate:
                raise ValueError(f"{name}.sample_rate {aug.sample_rate} differs from sample_rate {sample_rate}; set "
                                 f"them equal (the clips are resampled to sample_rate before augmentation)")
        self.augment, self.eval_augment = augment, eval_augment
        self.predict_files, self.predict_manifest = predict_files, predict
        self.shards = shards
        self.vocab: SentencePieceVocab | None = None
        self._ready = False

    # --- sources -------------------------------------------------------------------------------
    def _embedded_split(self, split: str) -> Path:
        """The builder's ``{split}.jsonl`` (built once; the builder caches the corpus)."""
        if self.embedded is None:  # no manifests, shards or builder
            raise ValueError("no speech data: set data.init_args.train, val and test (manifests), data.init_args."
                             "embedded (a corpus builder) or data.init_args.shards")
        if self._built is None:
            splits = ("train", "val", "test")
            self._built = build_embedded(self.embedded, self.data_dir, splits)  # type: ignore[arg-type]
        return Path(self._built[split])

    def _entries(self, split: str) -> list[dict[str, Any]]:
        """Manifest rows of a split: dicts with id, text, duration and either file or offset/num_samples."""
        if self.shards is not None:  # the clips stay in the shards: a ShardFile stands for each file
            view = split_view(self.shards, split, "speech", ["audio", "duration", "text", "id"])
            cols = read_columns(view, ["id", "text", "duration"])
            return [{"id": i, "text": t, "duration": float(d), "file": ShardFile(view, n, "audio")}
                    for n, (i, t, d) in enumerate(zip(cols["id"], cols["text"], cols["duration"]))]
        if self.manifests is not None:
            path = self.manifests[("train", "val", "test").index(split)]
            return [{"id": f"{e.manifest}:{e.line}", "text": e.text, "duration": e.duration, "file": e.audio_filepath}
                    for e in read_manifest(path)]
        with open(self._embedded_split(split)) as f:
            return [json.loads(line) for line in f]

    def _train_vocab(self, texts: list[str]) -> SentencePieceVocab:
        name = "espeak" if self.manifests is None else Path(self.manifests[0]).stem  # embedded: the cache path of old
        name = Path(self.shards.rstrip("/")).name if self.shards is not None else name
        size = "auto" if self.vocab_size is None else self.vocab_size  # None: the rule's size
        return SentencePieceVocab.train(
            texts, self.data_dir / "asr_vocab" / f"{name}_{self.units}{size}", vocab_size=self.vocab_size,
            model_type=self.units, byte_fallback=False, character_coverage=1.0)

    def _predicting(self) -> bool:
        t = self.trainer
        return t is not None and t.state.fn == "predict"

    def prepare_data(self) -> None:
        """Builds the embedded corpus and trains the vocabulary once (rank 0; cached). Prediction
        needs neither: the checkpoint carries the vocabulary."""
        if self._predicting():
            return
        self._train_vocab([normalize_text(e["text"]) for e in self._entries("train")])  # builds every split

    def setup(self, stage: str | None = None) -> None:
        if self._ready or stage == "predict":
            return
        train = self._entries("train")
        self.vocab = self._train_vocab([normalize_text(e["text"]) for e in train])
        alphabet = {c for i in range(self.vocab.vocab_size) for c in self.vocab.id_to_piece(i)} | {" "}
        splits = {"train": train, "val": self._entries("val"), "test": self._entries("test")}
        self.datasets = {s: self._dataset(rows, s, alphabet) for s, rows in splits.items()}
        self._ready = True

    def _dataset(self, rows: list[dict[str, Any]], split: str, alphabet: set[str]) -> SpeechDataset:
        keep, dropped_long, dropped_short, dropped_chars, empty = [], 0, 0, 0, []
        for r in rows:
            text = normalize_text(r["text"])
            bad = sorted({c for c in text if c not in alphabet})
            if not text:
                empty.append(str(r["id"]))
            elif r["duration"] > self.max_duration:
                dropped_long += 1
            elif r["duration"] < self.min_duration and split == "train":
                dropped_short += 1
            elif bad and self.unknown_chars == "error":
                raise ValueError(f"{split} utterance {r['id']}: transcript {text!r} has characters {bad} that the "
                                 f"vocabulary (trained on the training transcripts) lacks; set "
                                 f"data.init_args.unknown_chars to skip or unk, or clean the manifest")
            elif bad and self.unknown_chars == "skip":
                dropped_chars += 1
            else:
                keep.append({**r, "text": text})
        if dropped_long or dropped_short or dropped_chars:
            warnings.warn(f"{split}: dropped {dropped_long} clips longer than max_duration={self.max_duration} s, "
                          f"{dropped_short} shorter than min_duration={self.min_duration} s and {dropped_chars} "
                          f"with characters outside the vocabulary; {len(keep)} remain", stacklevel=2)
        if empty:
            warnings.warn(f"{split}: skipped {len(empty)} utterance(s) with an empty transcript (first at "
                          f"{empty[0]}); transcribe them or remove them from the manifest", stacklevel=2)
        if not keep:
            raise ValueError(f"the {split} split has no utterances left after filtering")
        texts = [r["text"] for r in keep]
        common = dict(ids=[str(r["id"]) for r in keep], texts=texts,
                      targets=encode_targets(self.vocab, texts, self.max_target_len),  # type: ignore[arg-type]
                      durations=torch.tensor([float(r["duration"]) for r in keep]), sample_rate=self.sample_rate,
                      augment=self.augment if split == "train" else self.eval_augment, seed=self.seed)
        if "file" in keep[0]:
            return SpeechDataset(**common, files=[r["file"] for r in keep])
        audio = np.load(self._embedded_split(split).with_suffix(".npy"), mmap_mode="r")
        return SpeechDataset(**common, audio=audio, offsets=torch.tensor([r["offset"] for r in keep]),
                             lengths=torch.tensor([r["num_samples"] for r in keep]))

    # --- loaders -------------------------------------------------------------------------------
    def _loader(self, ds: SpeechDataset, shuffle: bool) -> DataLoader:
        sampler = BucketBatchSampler(ds.durations, self.batch_size, shuffle, self.seed, *world_of(self.trainer),
                                     self.bucket_batches, virtual=ds.augment is not None)  # augmented: seeds per epoch
        packed = shuffle and self.pack_len is not None
        return self._batch_loader(ds, sampler, MarkPacked(self.pack_len) if packed else None, train=shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["train"], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["test"], shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        entries: list[ManifestEntry] = read_manifest(self.predict_manifest, require_text=False) if self.predict_manifest else []
        files = [e.audio_filepath for e in entries] + list(self.predict_files or [])
        if not files:
            raise ValueError("set data.init_args.predict_files (audio paths) or data.init_args.predict (a manifest) "
                             "to transcribe with `mmformer predict`")
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise FileNotFoundError(f"audio file(s) to transcribe do not exist: {missing[:5]}")
        ds = SpeechDataset(files, [""] * len(files), None, torch.zeros(len(files)), self.sample_rate, files=files)
        batches = [list(range(i, min(i + self.batch_size, len(files)))) for i in range(0, len(files), self.batch_size)]
        return self._batch_loader(ds, batches)

    # --- what a task must match -----------------------------------------------------------------
    def data_spec(self) -> DataSpec:
        """``vocab``: the transcripts' model (None after ``setup("predict")``: the checkpoint carries it)."""
        return DataSpec(vocab=self.vocab)
