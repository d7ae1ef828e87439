"""Webhooks: the events a person wants to hear about, POSTed as JSON to each URL.

Delivery never holds a rollout up: events wait in a bounded queue for one background
thread, each POST has a short timeout, a failure is a warning, and the end of the command
waits for what is queued only so long. Whatever gives the URLs (the plan's notify, a
config file, the command line) hands them to `Notifier`.
"""

import queue
import threading
import urllib.error
import urllib.request

from . import events, jsontext

# What is worth a message: stage verdicts, rollbacks, pauses and the end; not every interval.
NOTIFIED = (events.StageVerdict, events.HostRolledBack, events.Paused, events.Decided, events.Finished)

POST_TIMEOUT_SECONDS = 5.0
FLUSH_SECONDS = 10.0
QUEUE_LIMIT = 256


def warn_to_stderr(text: str) -> None:
    import sys
    print(f"ccrollout: warning: {text}", file=sys.stderr, flush=True)


def post_json(url: str, document: dict, timeout: float = POST_TIMEOUT_SECONDS) -> None:
    """One POST; raises OSError (urllib's errors are) when it does not arrive as a 2xx."""
    body = jsontext.dumps(document, indent=None).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "ccrollout"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 (http and https only, by the schema)
        answer.read(65536)


class Notifier:
    """A bus subscriber that delivers NOTIFIED events to URLS from a background thread."""

    def __init__(self, urls, warn=warn_to_stderr, post=post_json, timeout: float = POST_TIMEOUT_SECONDS):
        self.urls = list(dict.fromkeys(urls))  # each once, in order
        self.warn, self.post, self.timeout = warn, post, timeout
        self.queue: queue.Queue = queue.Queue(maxsize=QUEUE_LIMIT)
        self.dropped = 0
        self._worker = threading.Thread(target=self._deliver, name="ccrollout-notify", daemon=True)
        self._worker.start()

    def __call__(self, event: events.Event) -> None:
        if not isinstance(event, NOTIFIED):
            return
        try:
            self.queue.put_nowait(event.as_dict())
        except queue.Full:  # a webhook that cannot keep up loses messages, never the rollout time
            self.dropped += 1

    def _deliver(self) -> None:
        while True:
            document = self.queue.get()
            try:
                if document is None:
                    return
                for url in self.urls:
                    try:
                        self.post(url, document, self.timeout)
                    except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, bad URLs
                        self.warn(f"webhook {_shown(url)}: {document['event']} not delivered: {_reason(exc)}")
            finally:
                self.queue.task_done()

    def close(self, flush_seconds: float = FLUSH_SECONDS) -> None:
        """Deliver what is queued, waiting FLUSH_SECONDS at most; what is left is warned about."""
        try:
            self.queue.put(None, timeout=flush_seconds)
        except queue.Full:
            pass
        self._worker.join(timeout=flush_seconds)
        left = self.queue.qsize() if self._worker.is_alive() else 0
        if left or self.dropped:
            self.warn(f"webhooks: {left + self.dropped} events not delivered (too slow or unreachable)")


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    reason = getattr(exc, "reason", None) or exc
    return " ".join(str(reason).split())[:200]


def _shown(url: str) -> str:
    """The URL without its path and query, which may hold a token (Slack's do)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0].rsplit('@', 1)[-1]}"

