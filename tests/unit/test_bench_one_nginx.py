"""The bench's measurement of counting's cost in CPU time, both stacks behind one nginx: how the
figures are formed from the ticks and counts read (no timing is asserted here)."""

from bench import one_nginx, report
from bench.load import TICKS

US = 1e6 / TICKS  # µs in one clock tick


def window(added_us: float, machine_us: float, other: float = 0.0, c: int = 32) -> dict:
    return {
        "kind": "one-nginx",
        "concurrency": c,
        "window": 1,
        "errors": 0,
        "other_cpu_pct": other,
        "with_us": 100.0 + added_us,
        "without_us": 100.0,
        "machine_us": machine_us,
    }


def test_each_uwsgi_over_its_own_requests_and_the_machine_over_all():
    # (machine busy, total, ours) ticks, then (ticks, requests) of each uWSGI
    before = (1000, 4000, 0), (50, 10_000), (40, 10_000)
    after = (1300, 4600, 0), (150, 12_000), (130, 12_000)

    figures = one_nginx.per_request(before, after)

    assert figures == {
        "with_us": 100 * US / 2000,
        "without_us": 90 * US / 2000,
        "machine_us": 300 * US / 4000,
        "answered": [2000, 2000],
    }


def test_no_requests_answered_gives_no_figure():
    before = (0, 0, 0), (10, 5), (10, 5)
    after = (100, 200, 0), (20, 5), (20, 5)

    assert one_nginx.per_request(before, after)["with_us"] is None


def test_the_cost_is_what_counting_adds_over_the_machines_cpu_without_it():
    # 10 µs added; the machine spent 205 µs a request on average, half of them counted: 200
    # without counting, so ours answers 200/210 of the requests per CPU-second.
    rows = [window(9.0, 204.5), window(10.0, 205.0), window(11.0, 205.5)]

    summary = one_nginx.summarize(rows)

    assert summary == {
        "32": {
            "added_us": 10.0,
            "added_quartiles": [9.0, 11.0],
            "machine_us": 200.0,
            "ratio": round(200 / 210, 3),
            "windows": 3,
            "left_out": 0,
            "errors": 0,
        }
    }


def test_a_window_with_other_load_is_left_out_and_counted():
    rows = [window(4.0, 202.0), window(50.0, 300.0, other=one_nginx.SHARED_PCT + 1)]

    summary = one_nginx.summarize(rows)

    assert (summary["32"]["added_us"], summary["32"]["windows"], summary["32"]["left_out"]) == (
        4.0,
        1,
        1,
    )


def test_the_targets_read_it_beside_the_pairs():
    summary = {
        "ratios": {},
        "medians": {},
        "metrics_pairs": {"32": {"median": 0.93}},
        "metrics_one_nginx": {"32": {"ratio": 0.98}, "256": {"ratio": 0.94}},
        "ours_p99_c256_over_c32": None,
        "batch_1000_values_over_get_c32": None,
    }

    rows = {row["target"]: row for row in report.targets(summary)}

    one_nginx_rows = [row for text, row in rows.items() if "behind one nginx" in text]
    assert [(row["measured"], row["met"]) for row in one_nginx_rows] == [
        (0.98, True),
        (0.94, False),
    ]
    assert rows["metrics cost ≤ 5%: ours ≥ 0.95× ours without metrics, c=32"]["met"] is False
