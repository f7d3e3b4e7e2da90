"""Metric values in a worker's prometheus_client multiprocess files, added straight into them."""

import bisect


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
