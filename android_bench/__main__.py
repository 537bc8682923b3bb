"""`python -m android_bench ...` is `f2i-mobile bench ...`: same arguments, same output."""

import sys

from android_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
