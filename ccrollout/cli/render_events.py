"""`--events FILE`: every event as one line of JSON (schema/events.schema.json), written
and flushed as it happens, for a pipeline or a chat bridge to follow."""

import os
import sys

from .. import events, jsontext
from ..errors import InvalidInput


class EventLines:
    """A bus subscriber writing JSON lines to PATH ("-": standard output)."""

    def __init__(self, path: str):
        if path == "-":
            self.stream, self._owned = sys.stdout, False
            return
        try:  # what the fleet did is nobody else's business: the file is the operator's alone
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise InvalidInput(f"--events {path}: cannot write it: {exc.strerror}") from None
        self.stream, self._owned = os.fdopen(descriptor, "w", encoding="utf-8"), True

    def __call__(self, event: events.Event) -> None:
        self.stream.write(jsontext.dumps(event.as_dict(), indent=None) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._owned:
            self.stream.close()
