"""ccrollout: put BPF TCP congestion controls onto a fleet, in canary stages."""

__version__ = "0.1.0"
