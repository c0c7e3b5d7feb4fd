"""``python -m napari_nst.cli``: the ``napari-nst`` command."""

import sys

from . import main

sys.exit(main())
