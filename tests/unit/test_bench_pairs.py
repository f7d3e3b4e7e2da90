"""The bench's measurement of counting's cost in pairs, and the order of the stacks in a round:
how the figures are formed from measurements (no timing is asserted here)."""

from bench import paired, report
from bench.stacks import in_turn


def window(stack: str, pair: int, rps: float, c: int = 32, other: float = 0.0) -> dict:
    return {
        "kind": "paired",
        "pair": pair,
        "stack": stack,
        "concurrency": c,
        "rps": rps,
        "errors": 0,
        "other_cpu_pct": other,
    }


def test_the_pairs_median_of_ours_over_without_metrics():
    rows = [
        *(window("ours", 1, 960.0), window("ours-nometrics", 1, 1000.0)),
        *(window("ours-nometrics", 2, 800.0), window("ours", 2, 800.0)),
        *(window("ours", 3, 1100.0), window("ours-nometrics", 3, 1000.0)),
    ]

    summary = paired.summarize(rows)

    assert summary == {
        "32": {"median": 1.0, "quartiles": [0.96, 1.1], "pairs": 3, "left_out": 0, "errors": 0}
    }


def test_a_pair_with_other_load_is_left_out_and_counted():
    rows = [
        *(window("ours", 1, 900.0), window("ours-nometrics", 1, 1000.0)),
        *(window("ours", 2, 500.0, other=paired.SHARED_PCT + 1), window("ours-nometrics", 2, 1e3)),
        window("ours", 3, 1000.0),  # its other half never measured: not a pair
    ]

    summary = paired.summarize(rows)

    assert summary["32"]["median"] == 0.9
    assert (summary["32"]["pairs"], summary["32"]["left_out"]) == (1, 1)


def test_the_pairs_are_spread_over_starts_of_the_stacks(monkeypatch):
    monkeypatch.setattr(paired, "PER_START", 2)

    assert paired.starts(5) == [range(1, 3), range(3, 5), range(5, 6)]
    assert [n for numbers in paired.starts(24) for n in numbers] == list(range(1, 25))


def test_the_targets_read_the_pairs_where_measured_else_the_rounds():
    summary = {
        "ratios": {report.WITHOUT_METRICS: {"32": 0.9, "256": 0.91}},
        "metrics_pairs": {"32": {"median": 0.98}},
    }

    assert report.pairs_or_rounds(summary, "metrics_pairs", report.WITHOUT_METRICS) == {
        "32": 0.98,
        "256": 0.91,
    }


def test_pairs_against_fastapi_are_summarized_apart_from_counting():
    rows = [
        *(window("ours", 1, 1200.0), window("ours-nometrics", 1, 1250.0)),
        *(
            {**window("ours", 1, 1200.0), "versus": "fastapi"},
            {**window("fastapi", 1, 1000.0), "versus": "fastapi"},
        ),
    ]

    assert paired.summarize(rows)["32"]["median"] == 0.96
    assert paired.summarize(rows, paired.PEER)["32"]["median"] == 1.2
    summary = {
        "ratios": {report.PEER: {"32": 1.0, "256": 1.15}},
        "fastapi_pairs": paired.summarize(rows, paired.PEER),
    }
    assert report.pairs_or_rounds(summary, "fastapi_pairs", report.PEER) == {
        "32": 1.2,
        "256": 1.15,
    }


def test_rounds_reverse_the_order_of_the_stacks_every_other_round():
    stacks = ["a", "b", "c"]

    assert [in_turn(stacks, n) for n in (1, 2, 3)] == [stacks, ["c", "b", "a"], stacks]
