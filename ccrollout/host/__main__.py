"""Entry point on a host: the agent, answering JSON-line messages until stdin closes."""

import sys

from .agent import serve

if __name__ == "__main__":
    sys.exit(serve())
