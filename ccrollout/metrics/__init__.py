"""Where a canary's figures come from besides the host agents: Prometheus (promql.py says
what to ask, prometheus.py asks it). Nothing here decides; the judge does."""
