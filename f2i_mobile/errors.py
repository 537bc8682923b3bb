"""The one exception type users see.

Every failure a user can cause (bad image, missing weights, bad config, a budget that cannot be met)
is raised as an `F2IError` whose message is a single line; the CLI prints it and exits non-zero.
"""


class F2IError(Exception):
    """A user-facing error: the message is one line that names the thing and the problem."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
