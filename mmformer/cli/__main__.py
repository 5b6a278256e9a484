"""``python -m mmformer.cli ...`` is the ``mmformer`` command (torchrun starts it this way)."""

from mmformer.cli.command import console

if __name__ == "__main__":
    console()
