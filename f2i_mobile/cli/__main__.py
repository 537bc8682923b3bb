"""`python -m f2i_mobile.cli` is `f2i-mobile`."""

import sys

from f2i_mobile.cli import main

sys.exit(main())
