"""The one exception type users see, and how a command line reports it.

Every failure a user can cause (bad image, missing weights, bad config, a budget that cannot be met)
is raised as an `F2IError` whose message is a single line; `guarded` prints it and returns a
non-zero exit status, for `f2i-mobile` and `python -m android_bench` alike.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


class F2IError(Exception):
    """A user-facing error: the message is one line that names the thing and the problem."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def guarded(call: Callable[[], int | None], prog: str = "f2i-mobile") -> int:
    """Run a command; a user's error is one line on stderr and exit status 1, an interrupt 130,
    and a bug one line too unless F2I_MOBILE_DEBUG asks for the traceback."""
    from f2i_mobile.core.quiet import native_stderr_filtered

    try:
        with native_stderr_filtered():
            return int(call() or 0)
    except F2IError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prog}: error: out of memory; use a smaller input or tile", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one line unless asked for the traceback
        if os.environ.get("F2I_MOBILE_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(exc).__name__}: "
              f"{' '.join(str(exc).split())[:400]} (set F2I_MOBILE_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1
