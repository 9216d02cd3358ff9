"""``python -m fm_image``: the ``fm-image`` command line."""

from fm_image.cli import entry_point

entry_point()
