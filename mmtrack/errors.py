"""The one exception type users see: a clear, one-line message and a non-zero exit."""


class MMTrackError(Exception):
    """An error caused by the user's input or environment, shown as one line without a traceback."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
