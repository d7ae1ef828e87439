"""The host side's refusal: what a request's answer reports in one sentence, never as a traceback.

Its own module so that every other module may raise it (actions.py re-exports it).
"""


class ActionError(Exception):
    """A refusal with a reason for the operator (and the verifier's log, if any)."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log
