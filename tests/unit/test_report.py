"""The evidence a stage leaves (interval events) and `ccrollout report`, from synthetic journals:
the figure's axes hold the series plotted, the titles the verdict's figures."""

import json
import math

import pytest
from matplotlib.lines import Line2D

from ccrollout import cli, report
from ccrollout.journal import Journal, JournalError
from ccrollout.report import figure
from ccrollout.rollout import canary
from ccrollout.rollout.judge import Limits, Window
from ccrollout.schedule import Schedule

DIGEST = "ab" * 32
T0 = 1_700_000_000.0


def window(sent, retransmitted, **more) -> dict:
    return {"sent": sent, "retransmitted": retransmitted, "bytes_acked": 0, "seconds": 2.0, "connections": 1,
            "srtt_ms": None, "min_rtt_ms": None, **more}


def interval(moment, stage, phase, index, elapsed, hosts):
    return (moment, stage, "interval", {"phase": phase, "index": index, "elapsed": elapsed,
                                        "hosts": {host: {"role": role, **figures} for host, (role, figures)
                                                  in hosts.items()}})


STAGE_ONE_VERDICT = {
    "stage": 1, "hosts": ["lab1"], "controls": ["lab2", "lab3"], "outcome": "fail",
    "reasons": ["lab1: retransmit ratio 21% is above the ceiling 15%", "<script>alert(1)</script>"],
    "figures": {"lab1": {"outcome": "fail", "retransmit_ratio": 0.21, "sent": 3000, "intervals": 3,
                         "baseline": {"median": 0.011, "intervals": 2, "p_value": 0.1},
                         "control": {"median": 0.02, "intervals": 6, "p_value": 0.2},
                         "metrics": {"retransmit_ratio": {
                             "canary_median": 0.21, "limit": 0.15, "outcome": "fail",
                             "baseline": {"median": 0.011, "p_value": 0.031, "intervals": 2},
                             "control": {"median": 0.02, "p_value": 0.012, "intervals": 6}}}}}}
# A verdict as the judge wrote it before per-metric figures: the report falls back to these.
STAGE_TWO_VERDICT = {"stage": 2, "hosts": ["lab$4"], "controls": [], "outcome": "pass", "reasons": [],
                     "figures": {"lab$4": {"outcome": "pass", "retransmit_ratio": 0.012, "sent": 3000,
                                           "intervals": 3, "baseline": {"median": 0.01, "intervals": 2,
                                                                        "p_value": 0.4}}}}


def stage_events():
    """Stage 1: a 4 s baseline from T0, the change, a bake from T0 + 10 s; lab1 is the canary
    and worse in the bake, lab2 and lab3 the controls. Stage 2: a bake only, one canary."""
    controls = {"lab2": ("control", window(1000, 10)), "lab3": ("control", window(1000, 30))}
    goodput = {"bytes_acked": 2_000_000}  # over 2 s: 8 Mbit/s
    return [
        interval(T0 + 2, 1, "baseline", 1, 2.0, {"lab1": ("canary", window(1000, 10, **goodput)), **controls}),
        interval(T0 + 4, 1, "baseline", 2, 4.0, {"lab1": ("canary", window(1000, 12, **goodput)), **controls}),
        interval(T0 + 12, 1, "bake", 1, 2.0, {"lab1": ("canary", window(1000, 200, **goodput)), **controls}),
        interval(T0 + 14, 1, "bake", 2, 4.0, {"lab1": ("canary", window(1000, 220, **goodput)), **controls}),
        interval(T0 + 16, 1, "bake", 3, 6.0, {"lab1": ("canary", window(1000, 210, **goodput)), **controls}),
        (T0 + 16.5, 1, "verdict", STAGE_ONE_VERDICT),
        interval(T0 + 32, 2, "bake", 1, 2.0, {"lab$4": ("canary", window(1000, 12))}),
        interval(T0 + 34, 2, "bake", 2, 4.0, {"lab$4": ("canary", window(1000, 11))}),
        (T0 + 34.5, 2, "verdict", STAGE_TWO_VERDICT),
    ]


@pytest.fixture
def recorded(tmp_path):
    """A journal holding one rollout with STAGE_EVENTS; (its path, the rollout's id)."""
    journal = Journal(tmp_path / "journal.sqlite")
    rollout_id = journal.start_rollout("/p.yaml", "r1", "ccr_reno", DIGEST, ["lab1", "lab2", "lab3"])
    for moment, stage, kind, data in stage_events():
        journal._db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                            (rollout_id, moment, stage, kind, json.dumps(data)))
    journal.finish_rollout(rollout_id, "rolled_back", "stage 1 did not pass (fail); rolled back")
    journal.close()
    return tmp_path / "journal.sqlite", rollout_id


def drawn_events(path, rollout_id):
    journal = Journal(path)
    try:
        return journal.events(rollout_id)
    finally:
        journal.close()


def lines_of(axes) -> dict[str, tuple[list, list]]:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
            for line in axes.get_lines() if isinstance(line, Line2D)}


def test_each_stage_is_placed_on_one_clock_with_its_verdict(recorded):
    stage_one, stage_two = report.stages(drawn_events(*recorded))
    assert (stage_one.baseline_end, stage_one.bake_start) == (4.0, 10.0)
    assert [(i.phase, i.x) for i in stage_one.intervals] == [
        ("baseline", 2.0), ("baseline", 4.0), ("bake", 12.0), ("bake", 14.0), ("bake", 16.0)]
    assert stage_one.hosts("canary") == ["lab1"] and stage_one.hosts("control") == ["lab2", "lab3"]
    assert [metric.name for metric in stage_one.metrics()] == ["retransmit_ratio", "goodput",
                                                               "goodput_per_connection"]
    assert stage_one.verdict["outcome"] == "fail"
    assert (stage_two.baseline_end, stage_two.bake_start) == (None, 0.0)


def test_the_figure_holds_the_canary_its_baseline_and_the_controls(recorded):
    stages = report.stages(drawn_events(*recorded))
    drawn = figure.draw_rollout(stages, "rollout r1")
    first, second = drawn.subfigs
    assert first._suptitle.get_text().startswith("stage 1: FAIL (canaries: lab1; controls: lab2, lab3)")
    ratio_axes, goodput_axes, _ = first.axes
    plotted = lines_of(ratio_axes)
    assert plotted["lab1: baseline"][0] == [2.0, 4.0]
    assert plotted["lab1: baseline"][1] == pytest.approx([1.0, 1.2])
    assert plotted["lab1: bake"][0] == [12.0, 14.0, 16.0]
    assert plotted["lab1: bake"][1] == pytest.approx([20.0, 22.0, 21.0])
    assert plotted["controls: median of 2"] == ([2.0, 4.0, 12.0, 14.0, 16.0], pytest.approx([2.0] * 5))
    assert plotted["bake begins"][0] == [10.0, 10.0]  # the change, as a vertical line
    title = ratio_axes.get_title(loc="left")
    assert "lab1 fail: median 21%, limit +15 points, baseline 1.1% p=0.031, controls 2% p=0.012" in title
    assert lines_of(goodput_axes)["lab1: bake"][1] == pytest.approx([8.0, 8.0, 8.0])  # Mbit/s
    assert "lab1: not judged on this metric" in goodput_axes.get_title(loc="left")
    # the fallback: a verdict without per-metric figures shows its retransmit figures
    (only,) = second.axes
    assert lines_of(only)[r"lab\$4: bake"][1] == pytest.approx([1.2, 1.1])
    assert r"lab\$4 pass: median 1.2%, baseline 1% p=0.4" in only.get_title(loc="left")
    assert figure.png(drawn).startswith(b"\x89PNG")  # '$' in a host name is not read as math


def test_report_writes_png_and_html_and_prints_the_path(recorded, tmp_path, capsys, monkeypatch):
    path, rollout_id = recorded
    assert cli.main(["report", "--journal", str(path), "-o", str(tmp_path / "r.png")]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'r.png'}\n"
    assert (tmp_path / "r.png").read_bytes().startswith(b"\x89PNG")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", "--journal", str(path), rollout_id]) == 0
    written = tmp_path / f"report-{rollout_id}.html"
    assert capsys.readouterr().out == f"report-{rollout_id}.html\n"
    page = written.read_text()
    assert page.count("src='data:image/png;base64,") == 2
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    assert "<td>lab1</td><td>retransmitted segments</td><td>fail</td><td>21%</td><td>15%</td>" in page
    assert "failed the canary of stage 1 (fail) and was rolled back" in page


def test_report_errors_are_one_line_with_their_exit_code(recorded, tmp_path, capsys):
    path, _ = recorded
    assert cli.main(["report", "--journal", str(path), "nope"]) == 3
    assert "no rollout 'nope' in the journal" in capsys.readouterr().err
    assert cli.main(["report", "--journal", str(path), "-o", str(tmp_path / "r.pdf")]) == 2
    assert "give a file ending in .png or .html" in capsys.readouterr().err
    assert cli.main(["report", "--journal", str(path), "-o", str(tmp_path / "no" / "r.png")]) == 2
    assert "cannot be written" in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    (lambda data: data["hosts"]["lab1"].update(role="boss"), "role 'boss' is not one of canary, control"),
    (lambda data: data["hosts"]["lab1"].update(sent=-1), "sent -1 is not a finite number"),
    (lambda data: data["hosts"]["lab1"].update(srtt_ms=float("inf")), "srtt_ms inf is not a finite number"),
    (lambda data: data.update(elapsed=float("nan")), "elapsed nan is not a finite number"),
    (lambda data: data.update(phase="later"), "phase 'later' is not one of baseline, bake"),
    (lambda data: data.update(hosts=["lab1"]), "hosts ['lab1'] is not a mapping"),
])
def test_a_tampered_interval_is_one_journal_error(tmp_path, change, message):
    journal = Journal(tmp_path / "journal.sqlite")
    rollout_id = journal.start_rollout("/p.yaml", "r1", "ccr_reno", DIGEST, ["lab1"])
    _, stage, kind, data = stage_events()[0]
    change(data)
    journal._db.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?)", (rollout_id, T0, stage, kind, json.dumps(data)))
    with pytest.raises(JournalError, match="was the journal edited") as caught:
        journal.events(rollout_id)
    assert message in str(caught.value)
    assert journal.events(rollout_id, ("started",))  # readers that need no intervals are not held up


def test_the_canary_tells_each_interval_with_each_hosts_role():
    counters = {"c1": 0, "k1": 0}

    def sampler(hosts):
        for host in hosts:
            counters[host] += 100
        return {host: canary.Sample(host, 0.0, Window(counters[host], counters[host] // 100)) for host in hosts}, {}

    told = []
    schedule = Schedule(baseline=0.2, settle=0, bake=0.2, interval=0.1)
    canary.measure_baseline(sampler, ["c1", "k1"], schedule, on_interval=lambda *args: told.append(args),
                            controls=["k1"])
    limits = Limits(max_retransmit_ratio=0.5, max_increase=0.5, min_segments=1, min_intervals=1)
    canary.bake(sampler, canary.Bake(["c1"], ["k1"], {}), limits, schedule,
                on_interval=lambda *args: told.append(args))
    for phase in ("baseline", "bake"):  # how many depends on the clock; numbered from 1 either way
        indexes = [index for their_phase, index, _, _ in told if their_phase == phase]
        assert indexes == list(range(1, len(indexes) + 1)) and indexes
    for phase, index, elapsed, figures in told:
        assert elapsed > 0 and math.isfinite(elapsed)
        assert {host: role for host, (role, _) in figures.items()} == {"c1": "canary", "k1": "control"}
        assert figures["c1"][1] == Window(100, 1)


def test_odd_verdict_figures_from_an_edited_journal_are_shown_as_unknown_never_a_crash(tmp_path):
    odd = {"stage": 1, "hosts": ["lab1"], "outcome": "fail", "reasons": "not a list",
           "figures": {"lab1": {"retransmit_ratio": 0.2, "sent": 1, "outcome": ["?"], "baseline": "x",
                                "metrics": {"retransmit_ratio": {"canary_median": "high", "limit": {"a": 1},
                                                                 "baseline": [], "control": {"p_value": "0"}},
                                            "goodput": 7}}}}
    events = [{"time": T0 + 2, "stage": 1, "kind": kind, "data": data}
              for _, _, kind, data in stage_events()[2:5]] + [{"time": T0 + 3, "stage": 1, "kind": "verdict",
                                                               "data": odd}]
    for kind in ("png", "html"):
        assert report.render(kind, "rollout $r1$", "story", events)
    (stage,) = report.stages(events)
    (ratio_axes, *_) = figure.draw_one_stage(stage).axes
    assert "lab1 ?: median ?, limit ?, controls ? p=?" in ratio_axes.get_title(loc="left")


def test_a_stage_baked_again_after_a_resume_is_drawn_from_its_last_run():
    first_run = [{"time": moment, "stage": stage, "kind": kind, "data": data}
                 for moment, stage, kind, data in stage_events()[:3]]  # died in the bake
    again = [{"time": moment + 600, "stage": stage, "kind": kind, "data": data}
             for moment, stage, kind, data in stage_events()[:6]]
    (stage, ) = report.stages(first_run + again)
    assert [(i.phase, i.x) for i in stage.intervals] == [
        ("baseline", 2.0), ("baseline", 4.0), ("bake", 12.0), ("bake", 14.0), ("bake", 16.0)]


def test_relative_limits_read_as_shares_of_the_reference():
    from ccrollout.report.summary import limit_shown
    from ccrollout.rollout.metrics import BY_NAME
    assert limit_shown(BY_NAME["goodput"], 0.5) == "50% lower"
    assert limit_shown(BY_NAME["srtt"], 1.0) == "100% higher"
    assert limit_shown(BY_NAME["retransmit_ratio"], 0.02) == "+2 points"
