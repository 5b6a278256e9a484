"""End-to-end speech translation vs the cascade (speech recognition → text translation), side by side.

Both systems translate the same English test clips into Spanish and are scored with the same
sacrebleu BLEU/chrF (mmformer.text_metrics) against the same references; each one is run the way a
user runs it, through ``mmformer predict`` with its recipe and checkpoint:

- end to end: ``tasks/speech_translation.yaml`` over the test manifest;
- cascade: ``tasks/speech_recognition.yaml`` transcribes the clips, ``tasks/translation.yaml``
  translates the transcripts (one line each), both with their recipes' decoding settings.

    python bench/cascade_speech_translation.py --st runs/st/version_0/checkpoints/last.ckpt \\
        --asr runs/sr/version_0/checkpoints/last.ckpt --mt runs/tr/version_0/checkpoints/last.ckpt

The test manifest defaults to the speech-translation builder's (``data/speech_translation_<hash>/test.jsonl``,
built by the first ``mmformer fit --config tasks/speech_translation.yaml``); its rows carry the English
``text`` (scored as the cascade's transcription WER) and the Spanish ``translation`` (the reference).
Prints one line per system (BLEU, chrF; the cascade's transcription WER beside it) and their BLEU
difference. Quality, not speed: no ratio line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmformer.text_metrics import METRICS  # noqa: E402


def predict(recipe: str, ckpt: str, out: Path, *overrides: str) -> list[tuple[str, str]]:
    """``mmformer predict`` of one recipe; returns its ``predictions.tsv`` rows (id, text) in order."""
    cmd = [sys.executable, "-m", "mmformer", "predict", "--config", str(ROOT / recipe), "--ckpt_path", ckpt,
           f"--trainer.default_root_dir={out}", "--trainer.logger=false", *overrides]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    tsv = sorted(out.rglob("predictions.tsv"), key=lambda p: p.stat().st_mtime)[-1]
    rows = [line.split("\t", 1) for line in tsv.read_text().splitlines()]
    return [(i, t) for i, t in rows]


def score(hyps: list[str], refs: list[str]) -> dict[str, float]:
    """BLEU and chrF as the tasks log them (sacrebleu, 0–100)."""
    out = {}
    for name in ("bleu", "chrf"):
        metric = METRICS[name]()
        metric.update(hyps, [[r] for r in refs])
        out[name] = 100 * float(metric.compute())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--st", required=True, help="tasks/speech_translation.yaml checkpoint")
    p.add_argument("--asr", required=True, help="tasks/speech_recognition.yaml checkpoint")
    p.add_argument("--mt", required=True, help="tasks/translation.yaml checkpoint")
    p.add_argument("--manifest", help="test manifest with audio_filepath, text and translation (default: the builder's)")
    p.add_argument("--show", type=int, default=3, help="examples printed (reference, both outputs, transcript)")
    p.add_argument("--precision", default="32-true", help="trainer precision for all three (CPU: 32-true)")
    args = p.parse_args()
    manifest = Path(args.manifest) if args.manifest else sorted((ROOT / "data").glob("speech_translation_*/test.jsonl"))[-1]
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    clips = [str((manifest.parent / r["audio_filepath"]).resolve()) for r in rows]
    refs = [r["translation"] for r in rows]
    prec = f"--trainer.precision={args.precision}"

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        st = dict(predict("tasks/speech_translation.yaml", args.st, work / "st", prec,
                          f"--data.init_args.predict={manifest}"))
        asr = dict(predict("tasks/speech_recognition.yaml", args.asr, work / "asr", prec,
                           f"--data.init_args.predict={manifest}"))
        # Names are the clips' paths as each DataModule resolved them: match them by resolved path.
        st = {str(Path(k).resolve()): v for k, v in st.items()}
        asr = {str(Path(k).resolve()): v for k, v in asr.items()}
        transcripts = [asr[c] for c in clips]
        lines = work / "transcripts.txt"
        lines.write_text("".join(t + "\n" for t in transcripts))
        mt = [t for _, t in predict("tasks/translation.yaml", args.mt, work / "mt", prec,
                                    f"--data.init_args.predict={lines}")]
    if len(mt) != len(clips):
        raise RuntimeError(f"the translation recipe returned {len(mt)} lines for {len(clips)} transcripts")
    wer = METRICS["wer"]()
    wer.update(transcripts, [r["text"] for r in rows])
    end_to_end, cascade = score([st[c] for c in clips], refs), score(mt, refs)
    print(f"test clips: {len(clips)} ({manifest})")
    print(f"end to end (speech_translation.yaml): BLEU {end_to_end['bleu']:.1f}  chrF {end_to_end['chrf']:.1f}")
    print(f"cascade (speech_recognition.yaml WER {100 * float(wer.compute()):.1f} → translation.yaml): "
          f"BLEU {cascade['bleu']:.1f}  chrF {cascade['chrf']:.1f}")
    print(f"end to end minus cascade: {end_to_end['bleu'] - cascade['bleu']:+.1f} BLEU")
    for i in range(min(args.show, len(clips))):
        print(f"  reference: {refs[i]}\n  end to end: {st[clips[i]]}\n  transcript: {transcripts[i]}\n"
              f"  cascade: {mt[i]}\n")


if __name__ == "__main__":
    main()
