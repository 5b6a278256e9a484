"""The ``mmformer`` console script: LightningCLI's subcommands plus ``export`` and ``train-tokenizer``.

    mmformer fit --config tasks/<recipe>.yaml          # fit / validate / test / predict: mmformer.cli
    mmformer export --config ... --ckpt_path ... --out exported/          # mmformer.export
    mmformer train-tokenizer --input a.txt --output data/spm/m            # mmformer.data.train_tokenizer

``python -m mmformer ...`` is the same command. This module sits above everything it dispatches to,
so none of them imports it back.
"""

from __future__ import annotations

import sys


def console() -> None:
    """Runs the subcommand named by ``sys.argv[1]`` (returns nothing, so no object is printed on exit)."""
    if sys.argv[1:2] == ["export"]:
        from mmformer.export import main as export_main

        export_main(sys.argv[2:])
        return
    if sys.argv[1:2] == ["train-tokenizer"]:
        from mmformer.data.train_tokenizer import main as train_tokenizer_main

        sys.exit(train_tokenizer_main(sys.argv[2:]))  # its exit status: 2 on bad inputs
    from mmformer.cli import main

    main()


if __name__ == "__main__":
    console()
