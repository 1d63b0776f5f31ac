"""User-facing errors: the CLI prints them as one line, never a traceback."""


class VadError(Exception):
    """An error caused by the user's input (file, config, arguments), not by a bug."""


class SourceError(VadError):
    """A video, frame folder or stream that cannot be read."""

    def __init__(self, location: str, reason: str):
        super().__init__(f"{location}: {reason}")
        self.location = location
        self.reason = reason
