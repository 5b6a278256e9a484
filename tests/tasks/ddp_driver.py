"""Several ``mmformer fit`` runs in one pair of DDP processes (for tests/tasks/test_distributed.py).

Started twice, with ``LOCAL_RANK`` 0 and 1 and ``MASTER_ADDR``/``MASTER_PORT`` set, as torchrun would start
it: Lightning then sees processes created outside it and joins them in one process group, which every
later fit in the same processes reuses. So the interpreter start and the library imports (several
seconds a process on a 2-core machine) are paid once for all recipes instead of twice per recipe.

    python tests/tasks/ddp_driver.py PLAN.json      # PLAN.json: [{"name": ..., "args": [...]}, ...]

Prints ``DDP-RUN <name> rank <r> step <s> ok`` after each fit. On an error it prints the traceback and
``DDP-RUN <name> rank <r> failed`` and stops: the other rank would wait for it in a collective.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from mmformer.cli import main


def run(plan: list[dict]) -> int:
    rank = os.environ.get("LOCAL_RANK", "?")
    for item in plan:
        try:
            cli = main(["fit", *item["args"]])
        except BaseException:  # noqa: BLE001 - a CLI error exits with SystemExit; report every kind
            traceback.print_exc()
            print(f"DDP-RUN {item['name']} rank {rank} failed", flush=True)
            return 1
        print(f"DDP-RUN {item['name']} rank {cli.trainer.global_rank} step {cli.trainer.global_step} ok", flush=True)
    return 0


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        sys.exit(run(json.load(f)))
