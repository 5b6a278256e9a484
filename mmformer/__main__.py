"""``python -m mmformer ...`` is the ``mmformer`` command."""

from mmformer.cli.command import console

if __name__ == "__main__":
    console()
