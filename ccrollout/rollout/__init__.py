"""One rollout from plan to fleet: the runner (claims, preparing, finishing, resuming),
the stage (change, bake, judge), the canary (sampling), the control group, and the judge.

Import the modules themselves (`from ccrollout.rollout.runner import Runner`): this file
imports nothing, so the plan may use the judge's types without a cycle."""
