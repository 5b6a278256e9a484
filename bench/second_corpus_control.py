"""The decision-transformer recipe on a second corpus of another domain: Acrobot-v1 swing-up.

The corpus is :mod:`corpora.acrobot` (an energy-pumping controller with ε-random torques,
ε from 0 to 1, 100 episodes per level; reward -1 per step until the tip clears the line, at most 500 steps),
written as a D4RL ``.npz``. The recipe runs as a user would run it on their own D4RL file:
``tasks/decision_transformer.yaml`` with its data section swapped for ``mmformer.data.TrajectoryData`` over the
file (``env_id: Acrobot-v1``, ``train``; context, batch size, validation fraction and test episodes as shipped).

What else has to change, and why it is the minimal honest swap: the model section states the environment's
sizes and the returns it conditions on, and nothing links them to the data (the CLI has no
``link_arguments`` from data to model; the task checks the data's ControlSpec against the tokenizer when the
run starts and stops with "set model.init_args.model.tokenizer.init_args to state_dim: 6, act_dim: 3, ..."). So
three settings change beside the data section, all dictated by the environment, none tuned:
``tokenizer.state_dim: 6`` and ``act_dim: 3`` (CartPole: 4 and 2), and ``target_returns``/``val_targets``, since
CartPole's targets (500 ... 100) are returns Acrobot cannot give (its returns lie in [-500, 0]). The targets
are fixed before any fit: -80 (above the controller's mean, near the best episodes), -100 (about the clean
controller), -200 and -300 (mid and low in the data); validation rolls out at -80 and -200. Everything else —
widths, depth, context, schedule, sampling temperature, ``max_timestep: 512`` (Acrobot stops at 500),
``return_scale: 100`` — stays as shipped. Then ``mmformer test`` on ``best.ckpt`` (chosen on
``val/return@-80``; ``last.ckpt`` when there is none): 50 episodes per target on test seeds 0-49.

    python bench/second_corpus_control.py --root runs/sc_control
    python bench/second_corpus_control.py --root runs/sc_control --ckpt runs/sc_control/version_0/checkpoints/last.ckpt

Prints the mean return at each target beside the dataset's mean episode return, the clean controller's on the
same test seeds 0-49 and on its reference seeds (``ref_max_score``), and random torques' (``ref_min_score``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from corpora import acrobot  # noqa: E402
from corpora.control import run_episodes  # noqa: E402
from common import fit_and_test  # noqa: E402

TARGETS = [-80.0, -100.0, -200.0, -300.0]  # fixed before any fit (see the docstring)
VAL_TARGETS = [-80.0, -200.0]


def data_section(path: Path, shipped: dict[str, Any]) -> dict[str, Any]:
    """The recipe's new ``data:``: TrajectoryData over the D4RL file, the shipped loader settings kept."""
    keep = {k: v for k, v in shipped.get("init_args", {}).items()
            if k in ("context", "batch_size", "val_fraction", "eval_episodes")}
    return {"class_path": "mmformer.data.TrajectoryData",
            "init_args": {"env_id": acrobot.ENV_ID, "train": str(path), **keep}}


def env_settings(model: dict[str, Any]) -> dict[str, Any]:
    """The model section with the environment's sizes and returns (the settings the data cannot set)."""
    args = model["init_args"]
    args["model"]["tokenizer"]["init_args"].update(state_dim=acrobot.STATE_DIM, act_dim=acrobot.NUM_ACTIONS)
    args.update(target_returns=TARGETS, val_targets=VAL_TARGETS)
    return model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="runs/second_corpus_control", help="run folder")
    p.add_argument("--config", default="tasks/decision_transformer.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra mmformer override")
    p.add_argument("--episodes-per-level", type=int, default=acrobot.AcrobotDatasetSpec.episodes_per_level)
    p.add_argument("--ckpt", help="skip the fit and test this checkpoint")
    args = p.parse_args()
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    path = acrobot.build(acrobot.AcrobotDatasetSpec(episodes_per_level=args.episodes_per_level), ROOT / "data")
    returns = acrobot.episode_returns(path)
    with np.load(path) as f:
        ref_min, ref_max = float(f["ref_min_score"]), float(f["ref_max_score"])
    print(f"corpus {path} ({time.perf_counter() - t0:.0f} s): {len(returns)} episodes, mean return "
          f"{returns.mean():.1f}, best {returns.max():.0f}; clean controller {ref_max:.1f}, random {ref_min:.1f}",
          flush=True)
    recipe = yaml.safe_load((ROOT / args.config).read_text())
    recipe["data"] = data_section(path, recipe["data"])
    recipe["model"] = env_settings(recipe["model"])
    config = root / "dt_acrobot.yaml"
    config.write_text(yaml.safe_dump(recipe, sort_keys=False))
    done = fit_and_test(["--config", str(config), *[f"--{kv}" for kv in args.set]], root, ROOT, args.ckpt)
    m, ckpt = done.metrics, done.ckpt
    n = int(recipe["data"]["init_args"].get("eval_episodes", 50))
    clean = run_episodes(acrobot.ENV_ID, acrobot.acrobot_controller, 0.0, n, 0)  # resets seeds 0..n-1: the test's
    on_test = float(clean["rewards"].sum()) / n
    cells = ", ".join(f"@{t:g}: {m.get(f'test/return@{t:g}', float('nan')):.1f}" for t in TARGETS)
    print(f"recipe: test return {cells}; dataset mean {returns.mean():.1f}, clean controller {on_test:.1f} on the "
          f"test seeds ({ref_max:.1f} on its reference seeds), random {ref_min:.1f} (fit {done.fit_minutes:.1f} min, test {done.test_minutes:.1f} min, {ckpt})")
    best = m.get(f"test/return@{TARGETS[0]:g}", float("nan"))
    print(f"return@{TARGETS[0]:g} {'beats' if best > returns.mean() else 'does not beat'} the dataset's mean return")


if __name__ == "__main__":
    main()
