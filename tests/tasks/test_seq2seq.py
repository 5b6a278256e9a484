"""Seq2SeqTask: learns a toy transduction, decodes with the vocabulary it stores in checkpoints,
checks vocab sizes, and trains a CTC head beside the decoder."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from mmformer.backbone import BackboneConfig
from mmformer.checkpoint import read_checkpoint
from mmformer.data.spec import DataSpec, ProvidesDataSpec
from mmformer.decoding import GenerationConfig
from mmformer.tasks.optim import OptimConfig
from mmformer.tasks.seq2seq import Seq2SeqTask
from mmformer.tokenizers.sentencepiece_vocab import SentencePieceVocab, pad_rows
from mmformer.tokenizers.text import TextTokenizer

WORDS = "zero one two three four five six seven eight nine".split()


def _pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(2, 6))]
        out.append((" ".join(words), " ".join(reversed(words))))  # the task: reverse the word order
    return out


class ReverseData(pl.LightningDataModule, ProvidesDataSpec):
    def __init__(self, folder: Path, n_train: int = 2000) -> None:
        super().__init__()
        self.vocab = SentencePieceVocab.train(WORDS * 5, folder / "words", vocab_size=14, model_type="word",
                                              byte_fallback=False)
        self.train_pairs, self.test_pairs = _pairs(n_train, 0), _pairs(64, 1)

    def data_spec(self) -> DataSpec:
        return DataSpec(vocab=self.vocab, source_vocab=self.vocab)

    def _collate(self, rows: list[tuple[str, str]]) -> dict:
        src, tgt = zip(*rows)
        return {"source": self.vocab.batch(src, eos=True), "target": self.vocab.batch(tgt, bos=True, eos=True),
                "source_text": list(src), "target_text": list(tgt)}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_pairs, batch_size=32, shuffle=True, collate_fn=self._collate)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.test_pairs, batch_size=32, collate_fn=self._collate)

    test_dataloader = val_dataloader


def _task(vocab_size: int = 14, **kw) -> Seq2SeqTask:
    cfg = BackboneConfig(dim=48, depth=2, num_heads=4, mlp_ratio=2.0)
    return Seq2SeqTask(lambda d: TextTokenizer(d, vocab_size), vocab_size, backbone=cfg,
                       max_target_len=16, metrics=["bleu", "wer"], share_source_embedding=True,
                       generation=GenerationConfig(strategy="beam", beam_size=2, max_new_tokens=10),
                       optim=OptimConfig(lr=3e-3, warmup_steps=20), **kw)


def _trainer(tmp_path: Path, steps: int) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, default_root_dir=tmp_path, enable_progress_bar=False, logger=False,
                      enable_model_summary=False, accelerator="cpu", limit_val_batches=1, val_check_interval=1.0,
                      num_sanity_val_steps=0)


@pytest.mark.slow
def test_learns_to_reverse_and_decodes_from_its_checkpoint_alone(tmp_path: Path) -> None:
    pl.seed_everything(0)
    data, task = ReverseData(tmp_path), _task()
    trainer = _trainer(tmp_path, 300)
    trainer.fit(task, datamodule=data)
    metrics = trainer.test(task, datamodule=data, verbose=False)[0]
    assert metrics["test/bleu"] > 90 and metrics["test/wer"] < 5, metrics

    ckpt = tmp_path / "model.ckpt"
    trainer.save_checkpoint(ckpt)
    state = read_checkpoint(ckpt)  # weights_only=True
    assert state["mmformer_vocab"].dtype == torch.uint8
    fresh = _task().eval()  # no trainer, no DataModule: the vocabulary comes from the checkpoint
    fresh.load_state_dict(state["state_dict"])
    fresh.on_load_checkpoint(state)
    src = ["one two three", "nine eight"]
    batch = {"source": fresh.vocab.batch(src, eos=True)}
    assert fresh.predict_step(batch, 0) == ["three two one", "eight nine"]


@pytest.mark.slow
def test_hybrid_ctc_head_trains_and_decodes(tmp_path: Path) -> None:
    pl.seed_everything(0)
    # CTC emits at most one label per source frame: copying (no reversal) is what CTC can learn.
    data = ReverseData(tmp_path)
    data.train_pairs = [(s, s) for s, _ in data.train_pairs]
    data.test_pairs = [(s, s) for s, _ in data.test_pairs]
    task = _task(ctc_weight=0.5)
    trainer = _trainer(tmp_path, 200)
    trainer.fit(task, datamodule=data)
    metrics = trainer.test(task, datamodule=data, verbose=False)[0]
    assert metrics["test/wer_ctc"] < 10 and metrics["test/wer"] < 10, metrics
    task.generation = GenerationConfig(strategy="beam", beam_size=2, max_new_tokens=10, ctc_weight=0.3)
    hybrid = trainer.test(task, datamodule=data, verbose=False)[0]  # hybrid CTC/attention beam search
    assert hybrid["test/wer"] < 10, hybrid


def test_hybrid_decoding_without_a_ctc_head_is_refused_before_training() -> None:
    with pytest.raises(ValueError, match="needs a CTC head: train one with model.init_args.ctc_weight > 0"):
        Seq2SeqTask(lambda d: TextTokenizer(d, 14), 14, backbone=BackboneConfig(dim=16, depth=1, num_heads=2),
                    generation=GenerationConfig(strategy="beam", ctc_weight=0.3))


def test_vocab_size_mismatch_is_named(tmp_path: Path) -> None:
    data, task = ReverseData(tmp_path, n_train=32), _task(vocab_size=20)
    with pytest.raises(ValueError, match="has 14 pieces but the model was built for target_vocab_size=20.*set it to 14"):
        _trainer(tmp_path, 1).fit(task, datamodule=data)


def test_a_datamodule_without_a_data_spec_is_named(tmp_path: Path) -> None:
    class Plain(pl.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            return DataLoader([])

    with pytest.raises(ValueError, match="Seq2SeqTask needs vocab from its data, but Plain does not declare it"):
        _trainer(tmp_path, 1).fit(_task(), datamodule=Plain())


def test_a_missing_data_field_is_named(tmp_path: Path) -> None:
    class NoVocab(ReverseData):
        def data_spec(self) -> DataSpec:
            return DataSpec()

    with pytest.raises(ValueError, match="Seq2SeqTask needs vocab from its data, but NoVocab does not declare it"):
        _trainer(tmp_path, 1).fit(_task(), datamodule=NoVocab(tmp_path, n_train=32))


def test_out_of_table_ids_and_bad_targets_are_named() -> None:
    task = _task()
    with pytest.raises(ValueError, match="outside the embedding table of 14"):
        task.model.encode(torch.tensor([[5, 40]]))
    with pytest.raises(ValueError, match=r"target must be \(B, T>=2\)"):
        task._losses({"source": torch.tensor([[5, 3]]), "target": torch.tensor([[2]])})
    assert pad_rows([[], [4]]).tolist() == [[0], [4]]


def _toy_translation_recipe(tmp_path: Path) -> tuple[Path, list[str]]:
    """The translation recipe and overrides that shrink it to a toy TSV and a 1-layer, width-32 model."""
    from tests.data.modules.test_translation import toy_tsv

    recipe = Path(__file__).resolve().parents[2] / "tasks" / "translation.yaml"
    return recipe, [
        f"--data.init_args.train={toy_tsv(tmp_path / 'train.tsv', 300)}",
        f"--data.init_args.test={toy_tsv(tmp_path / 'test.tsv', 20, 1)}",
        f"--data.init_args.data_dir={tmp_path / 'data'}", "--data.init_args.vocab_size=300",
        "--model.init_args.target_vocab_size=300", "--model.init_args.source_tokenizer.init_args.vocab_size=300",
        "--model.init_args.backbone.dim=32", "--model.init_args.backbone.depth=1",
        f"--trainer.default_root_dir={tmp_path / 'runs'}", "--trainer.enable_progress_bar=false"]


@pytest.mark.slow
def test_translation_recipe_trains_and_predict_translates_a_file(tmp_path: Path, capsys) -> None:
    from mmformer.cli import main
    recipe, small = _toy_translation_recipe(tmp_path)
    main(["fit", "--config", str(recipe), *small, "--trainer.max_steps=3", "--trainer.limit_val_batches=1"])
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    sentences = tmp_path / "in.txt"
    sentences.write_text("the cat sees a dog\n\nred house\n")
    capsys.readouterr()
    main(["predict", "--config", str(recipe), *small, f"--ckpt_path={ckpt}",
          f"--data.init_args.predict={sentences}", "--model.init_args.generation.max_new_tokens=8"])
    printed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(("┃", "┏", "┡", "└"))]
    written = next((tmp_path / "runs").rglob("predictions.tsv")).read_text().splitlines()
    assert [w.split("\t")[0] for w in written] == ["1", "2", "3"]  # one line per input line, the empty one too
    assert len(printed) >= 3


def test_validation_decodes_greedily_with_the_anti_repetition_options() -> None:
    gen = GenerationConfig(strategy="beam", beam_size=3, max_new_tokens=9, max_len_a=1.5, max_len_b=2,
                           no_repeat_ngram_size=3, repetition_penalty=1.2, length_penalty=1.0)
    task = Seq2SeqTask(
        lambda d: TextTokenizer(d, 14), 14, backbone=BackboneConfig(dim=16, depth=1, num_heads=2), generation=gen)
    assert task.val_generation == GenerationConfig(strategy="greedy", max_new_tokens=9, max_len_a=1.5, max_len_b=2,
                                                   no_repeat_ngram_size=3, repetition_penalty=1.2)


@pytest.mark.slow
def test_test_command_takes_the_anti_repetition_options_as_dotted_overrides(tmp_path: Path) -> None:
    """What the integrator runs to measure the BLEU effect on a trained checkpoint, on a toy one."""
    from mmformer.cli import main
    recipe, small = _toy_translation_recipe(tmp_path)
    main(["fit", "--config", str(recipe), *small, "--trainer.max_steps=2", "--trainer.limit_val_batches=1"])
    ckpt = next((tmp_path / "runs").rglob("last.ckpt"))
    cli = main(["test", "--config", str(recipe), *small, f"--ckpt_path={ckpt}",
                "--model.init_args.generation.no_repeat_ngram_size=3",
                "--model.init_args.generation.repetition_penalty=1.2",
                "--model.init_args.generation.max_len_a=1.5", "--model.init_args.generation.max_len_b=5"])
    gen = cli.model.generation
    assert (gen.no_repeat_ngram_size, gen.repetition_penalty, gen.max_len_a, gen.max_len_b) == (3, 1.2, 1.5, 5)
    assert gen.strategy == "beam" and gen.beam_size == 4  # the recipe's other settings are kept
    assert "test/bleu" in cli.trainer.callback_metrics


def test_vaswani_embedding_scales_the_shared_table_on_both_sides() -> None:
    # target_scale + init std D^-0.5 (fairseq): source and target tokens enter at unit size from one table.
    torch.manual_seed(0)
    cfg = BackboneConfig(dim=64, depth=1, num_heads=4)
    task = Seq2SeqTask(lambda d: TextTokenizer(d, 500, scale=True), 500, backbone=cfg, share_source_embedding=True,
                       target_scale=True, target_positions="none")  # init std: 64^-0.5
    src, tgt = task.model.source_tokenizer, task.model.target_tokenizer
    assert src.embed.weight is tgt.embed.weight
    assert abs(float(tgt.embed.weight[1:].std()) - 0.125) < 0.005  # trunc_normal cuts at +-2, not +-2 std
    ids = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(tgt(ids).tokens, tgt.embed.weight[ids] * 8.0)
    assert 0.9 < float(tgt(ids).tokens.std()) < 1.1


def test_a_shared_table_with_two_scales_is_refused() -> None:
    with pytest.raises(ValueError, match="one shared table needs one scale.*target_scale"):
        Seq2SeqTask(lambda d: TextTokenizer(d, 20, scale=True), 20, backbone=BackboneConfig(dim=32, depth=1, num_heads=2),
                    share_source_embedding=True)
