"""The plain-PyTorch translation peer learns (a small copy task) and prints its result line."""

import json
import random
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_peer_learns_a_copy_task_and_reports_bleu(tmp_path: Path) -> None:
    rng = random.Random(0)
    words = "red green blue cat dog sun moon tree rock fish".split()
    rows = [" ".join(rng.choices(words, k=rng.randint(2, 5))) for _ in range(400)]
    for name, part in (("train.jsonl", rows[:360]), ("test.jsonl", rows[360:])):
        (tmp_path / name).write_text("".join(json.dumps({"src": s, "tgt": s.upper()}) + "\n" for s in part))
    out = subprocess.run([sys.executable, str(BENCH / "translation_peer.py"), "--train", str(tmp_path / "train.jsonl"),
                          "--test", str(tmp_path / "test.jsonl"), "--minutes", "5", "--max-steps", "400", "--lr", "3e-3",
                          "--vocab", "320", "--dim", "64", "--layers", "2", "--max-tokens", "512", "--warmup", "30"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("peer: test/bleu"))
    assert float(re.search(r"test/bleu ([\d.]+)", line).group(1)) > 60, out  # chance is ~0: it learned
    assert "400 steps" in line, line
