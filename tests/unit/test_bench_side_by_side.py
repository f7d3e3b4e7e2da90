"""The bench's measurement of ours against FastAPI in CPU time, both stacks at once: how the
figures are formed from the ticks, wrk's counts and its CPU (no timing is asserted here)."""

from bench import report, side_by_side
from bench.load import TICKS

US = 1e6 / TICKS  # µs in one clock tick


def half(nginx_us: float, server_us: float, wrk_us: float = 10.0, rps: float = 5000.0) -> dict:
    return {
        "requests": 1000,
        "rps": rps,
        "errors": 0,
        "us": {"nginx": nginx_us, "server": server_us, "wrk": wrk_us},
    }


def window(ours: dict, peer: dict, other: float = 0.0, c: int = 32) -> dict:
    return {
        "kind": "side-by-side",
        "window": 1,
        "concurrency": c,
        "stacks": ["ours", "fastapi"],
        "other_cpu_pct": other,
        "sides": [ours, peer],
    }


def test_each_part_over_the_requests_its_own_wrk_counted():
    before = {"nginx": 100, "server": 400}
    after = {"nginx": 150, "server": 600}
    run = {"requests": 2000, "rps": 400.0, "errors": 0, "wrk_cpu_s": 0.03}

    side = side_by_side.side(before, after, run)

    assert side == {
        "requests": 2000,
        "rps": 400.0,
        "errors": 0,
        "us": {"nginx": 50 * US / 2000, "server": 200 * US / 2000, "wrk": 0.03e6 / 2000},
    }
    assert side_by_side.total_us(side) == (250 * US + 0.03e6) / 2000


def test_a_side_without_requests_gives_no_figure():
    run = {"requests": 0, "rps": 0.0, "errors": 5, "wrk_cpu_s": 0.01}

    side = side_by_side.side({"nginx": 0, "server": 0}, {"nginx": 1, "server": 1}, run)

    assert side["us"] == {"nginx": None, "server": None, "wrk": None}
    assert side_by_side.total_us(side) is None


def test_the_ratio_is_requests_per_cpu_second_of_ours_over_the_peers():
    # ours 150 µs a request, FastAPI 195, 180 and 210: ours answers 1.3x, 1.2x and 1.4x as many
    # requests per CPU-second; the median window is 1.3x.
    rows = [
        window(half(40, 100), half(40, 145)),
        window(half(40, 100), half(40, 130)),
        window(half(40, 100), half(40, 160)),
    ]

    summary = side_by_side.summarize(rows)

    s = summary["ours / fastapi"]["32"]
    assert (s["ratio"], s["quartiles"], s["windows"], s["left_out"]) == (1.3, [1.2, 1.4], 3, 0)
    assert s["sides"][0] == {
        "rps": 5000.0,
        "us": {"nginx": 40.0, "server": 100.0, "wrk": 10.0},
        "total_us": 150.0,
    }
    assert s["sides"][1]["total_us"] == 195.0
    assert side_by_side.ratios(summary) == {"32": 1.3}


def test_a_window_with_other_load_or_no_requests_is_left_out_and_counted():
    no_requests = half(40, 100)
    no_requests["us"] = {"nginx": None, "server": None, "wrk": None}
    rows = [
        window(half(40, 100), half(40, 145)),
        window(half(40, 100), half(40, 400), other=side_by_side.SHARED_PCT + 1),
        window(half(40, 100), no_requests),
    ]

    s = side_by_side.summarize(rows)["ours / fastapi"]["32"]

    assert (s["ratio"], s["windows"], s["left_out"]) == (1.3, 1, 2)


def test_each_pair_of_stacks_is_summarized_apart():
    same = window(half(40, 100), half(40, 105))
    same["stacks"] = ["ours", "ours"]
    rows = [same, window(half(40, 100), half(40, 145))]

    summary = side_by_side.summarize(rows)

    assert {names: s["32"]["ratio"] for names, s in summary.items()} == {
        "ours / ours": round(155 / 150, 3),
        "ours / fastapi": 1.3,
    }
    assert side_by_side.ratios(summary) == {"32": 1.3}


def test_the_targets_read_it_beside_the_rounds():
    summary = {
        "ratios": {"FastAPI + uvicorn behind nginx": {"32": 0.98, "256": 1.29}},
        "medians": {},
        "metrics_pairs": {},
        "metrics_one_nginx": {},
        "side_by_side": {"ours / fastapi": {"32": {"ratio": 1.3}, "256": {"ratio": 1.05}}},
        "ours_p99_c256_over_c32": None,
        "batch_1000_values_over_get_c32": None,
    }

    rows = {row["target"]: row for row in report.targets(summary)}

    side_rows = [row for text, row in rows.items() if "side by side" in text]
    assert [(row["measured"], row["met"]) for row in side_rows] == [(1.3, True), (1.05, False)]
    assert rows["ours ≥ 1.1× FastAPI + uvicorn, c=32"]["met"] is False


def test_the_table_says_how_busy_each_stack_kept_the_cores_alone():
    summary = side_by_side.summarize([window(half(40, 100), half(40, 145))])
    medians = {"ours": {"32": {"busy_pct": 99.4}}, "fastapi": {"32": {"busy_pct": 98.6}}}

    lines = side_by_side.markdown(summary, medians)

    said = "Alone, in the rounds, the cores were busy (medians): ours at c=32 99 %, fastapi at "
    busy = lines.index(said + "c=32 99 %.")
    assert lines[busy + 2].startswith("| stacks | c |")
    assert "| ours / fastapi | 32 | 1.300× | 1.300–1.300 | 150 (40, 100, 10) |" in "\n".join(lines)
    assert side_by_side.markdown({}, medians) == []
