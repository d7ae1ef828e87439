"""How often the judge fails a good control, and how fast it catches bad ones.

Simulates per-interval figures (retransmissions, goodput, srtt) from a model fitted to
what the lab measured, runs each trial through the judge interval by interval as
canary.bake does (early stop, extension), and prints a table: for the good
control the false-fail rate with a 95 % confidence interval, for the worse and
the broken control the detection rate and the mean time to detect, and the
judge's time per call.

    .venv/bin/python bench/judge.py [--trials N] [--seed S]

The lab's figures (2 s intervals, 6000-9000 segments sent per host each):
- a good BPF control: median ratio ~1 %, but one interval in 25 loses a burst
  of ~900 segments (10-15 %);
- a somewhat worse one (like bbr here): about 5x that, 3-25 % per interval;
- the broken control: 23-32 % in every interval.
Goodput and srtt per interval (host/watch.py's figures; the README gives the lab
runs they come from):
- a good control: ~5.2 MB/s (42 Mbit/s of the 50 Mbit/s bottleneck), about 10 % apart
  from interval to interval, less in an interval that lost a burst; srtt ~3-4 ms;
- the starving control (one segment in flight): ~33-40 kB/s, ~50-90 segments an
  interval, nothing retransmitted, srtt ~35-43 ms (each segment waits for the delayed ack).
"""

import argparse
import time
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from ccrollout.rollout import judge

INTERVAL_SECONDS = 2
BAKE_INTERVALS = 4       # bake 8 s
BASELINE_INTERVALS = 3   # baseline 6 s (playbooks/lab-*.yaml)
CONTROL_HOSTS = 2        # the lab's first stage: one canary, two hosts not yet changed

SENT_PER_INTERVAL = (6000, 9000)
GOOD_MEDIAN_RATIO, GOOD_SPREAD = 0.01, 0.25    # lognormal: median and sigma of log
BURST_PROBABILITY, BURST_RATIO = 1 / 25, (0.10, 0.15)
WORSE_MEDIAN_RATIO, WORSE_SPREAD, WORSE_RANGE = 0.05, 0.6, (0.03, 0.25)
BROKEN_RATIO = (0.23, 0.32)

# Goodput (bytes/s) and srtt (ms) of an interval: median and sigma of log; a burst interval's
# goodput is cut by a share in BURST_GOODPUT_CUT.
# Measured: 30 intervals of 2 s of lab1's senders (watcher figures): goodput 4.52-6.11 MB/s
# (median 5.27; the 2.3 s connection cycle beats with the 2 s interval), srtt 2.87-3.24 ms;
# medians of the hosts during rollouts 3.5-3.9 ms. The srtt spread is widened for host-to-host
# differences.
GOOD_GOODPUT, GOOD_GOODPUT_SPREAD, BURST_GOODPUT_CUT = 5.2e6, 0.10, (0.05, 0.3)
GOOD_SRTT, GOOD_SRTT_SPREAD = 3.5, 0.08
STARVING_GOODPUT, STARVING_SRTT, STARVING_SPREAD, STARVING_SENT = 3.7e4, 40.0, 0.2, (60, 120)

LAB = judge.Limits(max_retransmit_ratio=0.15, max_increase=0.10, min_segments=500)
TIGHT = judge.Limits(max_retransmit_ratio=0.05, max_increase=0.02, min_segments=500)
TIGHT_EXTEND = judge.Limits(max_retransmit_ratio=0.05, max_increase=0.02, min_segments=500,
                            on_inconclusive=judge.EXTEND, max_extend_intervals=4)
RATIO_ONLY = judge.Limits(max_retransmit_ratio=0.15, max_increase=0.10, min_segments=500,
                          metrics=("retransmit_ratio",))
LIMITS = {"lab 15%/10pt": LAB, "tight 5%/2pt": TIGHT, "tight+extend 4": TIGHT_EXTEND, "lab, ratio only": RATIO_ONLY}


def flowing(rng: np.random.Generator, sent: int, ratio: float, burst: bool = False) -> judge.Window:
    """An interval of a control that fills the bottleneck: goodput and srtt around the lab's."""
    goodput = GOOD_GOODPUT * rng.lognormal(0.0, GOOD_GOODPUT_SPREAD)
    if burst:
        goodput *= 1 - rng.uniform(*BURST_GOODPUT_CUT)
    return judge.Window(sent, int(rng.binomial(sent, ratio)), bytes_acked=int(goodput * INTERVAL_SECONDS),
                        seconds=INTERVAL_SECONDS, connections=1,
                        srtt_ms=GOOD_SRTT * rng.lognormal(0.0, GOOD_SRTT_SPREAD))


def good(rng: np.random.Generator, sent: int) -> judge.Window:
    if rng.random() < BURST_PROBABILITY:
        return flowing(rng, sent, rng.uniform(*BURST_RATIO), burst=True)
    return flowing(rng, sent, GOOD_MEDIAN_RATIO * rng.lognormal(0.0, GOOD_SPREAD))


def worse(rng: np.random.Generator, sent: int) -> judge.Window:
    return flowing(rng, sent, float(np.clip(WORSE_MEDIAN_RATIO * rng.lognormal(0.0, WORSE_SPREAD), *WORSE_RANGE)))


def broken(rng: np.random.Generator, sent: int) -> judge.Window:
    return flowing(rng, sent, rng.uniform(*BROKEN_RATIO), burst=True)


def starving(rng: np.random.Generator, sent: int) -> judge.Window:
    """One segment in flight: little goes through, nothing is lost, every ack is a delayed one."""
    sent = int(rng.integers(*STARVING_SENT, endpoint=True))
    goodput = STARVING_GOODPUT * rng.lognormal(0.0, STARVING_SPREAD)
    return judge.Window(sent, 0, bytes_acked=int(goodput * INTERVAL_SECONDS), seconds=INTERVAL_SECONDS,
                        connections=1, srtt_ms=STARVING_SRTT * rng.lognormal(0.0, STARVING_SPREAD))


# A false-fail rate near zero takes more trials to pin down; good bakes are cheap to judge.
GOOD_TRIALS_FACTOR = 4

CONTROLS = {"good": good, "worse (bbr-like)": worse, "broken": broken, "starving": starving}


def interval(rng: np.random.Generator, control) -> judge.Window:
    return control(rng, int(rng.integers(*SENT_PER_INTERVAL, endpoint=True)))


@dataclass
class Tally:
    outcomes: dict[str, int] = field(default_factory=lambda: {judge.PASS: 0, judge.FAIL: 0, judge.INCONCLUSIVE: 0})
    intervals_to_reject: list[int] = field(default_factory=list)
    early_stops: int = 0
    calls: int = 0
    seconds_in_judge: float = 0.0

    @property
    def trials(self) -> int:
        return sum(self.outcomes.values())

    @property
    def rejected(self) -> int:
        """Trials that did not pass: the rollout would roll back (or hold)."""
        return self.trials - self.outcomes[judge.PASS]


def bake(rng: np.random.Generator, canary_control, control_hosts: int, limits: judge.Limits, tally: Tally) -> None:
    """One stage, sampled and judged the way canary.bake does it."""
    baselines = {"canary": [interval(rng, good) for _ in range(BASELINE_INTERVALS)]}
    canary: judge.Series = []
    controls: dict[str, judge.Series] = {f"control{index}": [] for index in range(control_hosts)}
    budget = judge.interval_budget(limits, BAKE_INTERVALS)
    for elapsed in range(1, budget + 1):
        canary.append(interval(rng, canary_control))
        for series in controls.values():
            series.append(interval(rng, good))
        started = time.perf_counter()
        verdict = judge.judge({"canary": canary}, baselines, controls, limits)
        tally.seconds_in_judge += time.perf_counter() - started
        tally.calls += 1
        stop_early = judge.can_stop_early(verdict, elapsed)
        if stop_early or (elapsed >= BAKE_INTERVALS and not judge.should_extend(verdict, elapsed, budget)):
            break
    tally.outcomes[verdict.outcome] += 1
    tally.early_stops += stop_early
    if not verdict.passed:
        tally.intervals_to_reject.append(elapsed)


def rate_with_interval(hits: int, trials: int) -> str:
    low, high = stats.binomtest(hits, trials).proportion_ci(confidence_level=0.95, method="wilson")
    return f"{hits / trials * 100:5.1f}% [{low * 100:4.1f}-{high * 100:5.1f}]"


def row(control: str, stage: str, limits_name: str, tally: Tally) -> str:
    counts = "/".join(str(tally.outcomes[outcome]) for outcome in (judge.PASS, judge.FAIL, judge.INCONCLUSIVE))
    if tally.intervals_to_reject:
        intervals = float(np.mean(tally.intervals_to_reject))
        detect = f"{intervals:5.2f} {intervals * INTERVAL_SECONDS:5.1f}s"
    else:
        detect = f"{'-':>5} {'-':>6}"
    return (f"{control:<17} {stage:<6} {limits_name:<15} {counts:>14} "
            f"{rate_with_interval(tally.rejected, tally.trials):>21} {detect} {tally.early_stops:>6} "
            f"{tally.seconds_in_judge / tally.calls * 1e6:8.0f}")


def run_row(rng: np.random.Generator, canary_control, control_hosts: int, limits: judge.Limits, trials: int) -> Tally:
    tally = Tally()
    for _ in range(trials):
        bake(rng, canary_control, control_hosts, limits, tally)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=400,
                        help=f"bakes per row (default 400); the good control's get {GOOD_TRIALS_FACTOR}x as many")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{args.trials} bakes per row ({args.trials * GOOD_TRIALS_FACTOR} for the good control) of "
          f"{BAKE_INTERVALS} x {INTERVAL_SECONDS} s intervals, baseline {BASELINE_INTERVALS} intervals, one canary.")
    print("not passed: a false fail for the good control, the detection rate for the others.\n")
    print(f"{'control':<17} {'stage':<6} {'limits':<15} {'pass/fail/inc':>14} {'not passed [95% CI]':>21} "
          f"{'to detect':>12} {'early':>6} {'us/call':>8}")
    started, calls, seconds_in_judge = time.perf_counter(), 0, 0.0
    for control, canary_control in CONTROLS.items():
        trials = args.trials * (GOOD_TRIALS_FACTOR if canary_control is good else 1)
        for stage, control_hosts in (("first", CONTROL_HOSTS), ("last", 0)):
            for limits_name, limits in LIMITS.items():
                tally = run_row(rng, canary_control, control_hosts, limits, trials)
                calls, seconds_in_judge = calls + tally.calls, seconds_in_judge + tally.seconds_in_judge
                print(row(control, stage, limits_name, tally))
    print(f"\nstage first: {CONTROL_HOSTS} control hosts; last: none (baseline and ceiling only).\n"
          "to detect: mean intervals and seconds until a bake that did not pass ended.\n"
          "early: bakes ended early by a clear fail. us/call: the judge's time per call.\n"
          f"judge: {calls} calls, {seconds_in_judge / calls * 1e6:.0f} us each on average; "
          f"bench {time.perf_counter() - started:.1f} s.")


if __name__ == "__main__":
    main()
