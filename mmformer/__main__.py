"""``python -m mmformer ...`` is the ``mmformer`` command."""

from mmformer.console import console

if __name__ == "__main__":
    console()
