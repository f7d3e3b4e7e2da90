"""Metric values in a worker's prometheus_client multiprocess files, added straight into them."""

import bisect
from collections.abc import Callable


class FileCounter:
    """A counter child of prometheus_client's multiprocess mode, counted straight into its 8
    bytes of the worker's file: the library's inc() takes a lock, checks for a fork and packs
    the value and a timestamp on every call. The file then holds the only current value (the
    child's own copy is no longer kept up to date; nothing reads it)."""

    __slots__ = ("view", "index")

    def __init__(self, value):
        self.view, self.index = where(value)

    def inc(self, amount: float) -> None:
        self.view[self.index] += amount


class FileHistogram:
    """A histogram child likewise: its sum and the first bucket that holds the amount, as
    Histogram.observe() adds them."""

    __slots__ = ("view", "sum", "buckets", "bounds")

    def __init__(self, child):
        self.view, self.sum = where(child._sum)
        self.buckets = [where(bucket)[1] for bucket in child._buckets]
        self.bounds = child._upper_bounds

    def observe(self, amount: float) -> None:
        view = self.view
        view[self.sum] += amount
        view[self.buckets[bisect.bisect_left(self.bounds, amount)]] += 1.0


def observer(histogram: FileHistogram, count: FileCounter | None = None) -> Callable:
    """histogram.observe, and one more of count if given, as one function over their places
    found once: in a worker under load each attribute read and call of a request's writes costs
    two to three times what it does in a loop (docs/performance.md). The first bucket is found by
    one comparison, as most answers and calls fall in it; the others by a search."""
    view, total, search = histogram.view, histogram.sum, bisect.bisect_left
    buckets, bounds = histogram.buckets, histogram.bounds
    first, first_bound = buckets[0], bounds[0]
    if count is None:

        def observe(amount: float) -> None:
            view[total] += amount
            view[first if amount <= first_bound else buckets[search(bounds, amount)]] += 1.0

        return observe
    counts, index = count.view, count.index

    def observe_counted(amount: float) -> None:
        counts[index] += 1.0
        view[total] += amount
        view[first if amount <= first_bound else buckets[search(bounds, amount)]] += 1.0

    return observe_counted


def in_file(child) -> FileCounter | FileHistogram:
    return FileHistogram(child) if hasattr(child, "_buckets") else FileCounter(child._value)


def where(value) -> tuple[memoryview, int]:
    """A multiprocess value's file as 8-byte doubles, and the index of the value in them. The
    library places every value it creates (the file's entries are 8-byte aligned) and, when the
    file outgrows its mapping, maps it again larger: a view of the old mapping stays valid for
    the values it holds. get() first, so a value created before a fork moves to this worker's
    file, as the library's inc() would do."""
    value.get()
    file = value._file
    return memoryview(file._m).cast("d"), file._positions[value._key] // 8
