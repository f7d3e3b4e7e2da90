"""Functions of every type the framework takes and gives, as a user writes them: what the type
tests serve (tests/unit/test_types.py in-process, tests/stack/test_types_stack.py through the
stack). The streaming ones note each item and their end in a file of TICKS, keyed by a tag the
test chooses: the test reads there what the function itself saw (uWSGI runs it elsewhere)."""

import asyncio
import csv
import dataclasses
import enum
import hashlib
import io
import math
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from modelserver.files import File

TICKS = Path(tempfile.gettempdir()) / "modelserver-typed-ticks"


class Level(enum.Enum):
    LOW = "low"
    HIGH = "high"


def choose(
    speed: Literal["fast", "slow"], level: Level = Level.LOW, bias: dict[str, float] | None = None
) -> str:
    """A Literal and an Enum, from a query string or JSON; a dict from JSON only."""
    return f"{speed}/{level.value}" + ("" if bias is None else f"/{sorted(bias)}")


def row_sums(rows: list[list[float]]) -> list[float]:
    """A matrix, without vectorized: the sum of each row."""
    sums = [math.fsum(row) for row in rows]
    if not all(map(math.isfinite, sums)):
        raise OverflowError("a row's sum overflows a 64-bit float")
    return sums


def best(scores: dict[str, float]) -> str:
    """A dict: the key of the highest score."""
    if not scores:
        raise ValueError("scores is empty")
    return max(scores, key=scores.__getitem__)


def schedule(day: date, at: clock = clock(9), after: timedelta = timedelta(0)) -> datetime:
    """A date, a time and a duration: the moment they make, in UTC (OpenAPI's date-time has
    an offset; a naive datetime would be written without one)."""
    return datetime.combine(day, at, tzinfo=UTC) + after


def price(item: uuid.UUID, amount: Decimal, currency: Literal["EUR", "USD"] = "EUR") -> dict:
    """A UUID and a Decimal, given back as pydantic writes them."""
    return {"item": item, "amount": amount * 2, "currency": currency}


def bounded(
    share: Annotated[float, Field(ge=0, le=1)],
    tag: Annotated[str, Field(max_length=8, pattern="^[a-z]+$")] = "a",
) -> str:
    """Field constraints, in a query string and in JSON."""
    return f"{tag}:{share}"


def repeated(x: float, *, times: Annotated[int, Field(ge=0, le=4)] = 2) -> list[float]:
    """A keyword-only parameter, given by name: x, times times."""
    return [x] * times


def span(pair: tuple[int, int]) -> int:
    """A tuple of two integers."""
    return pair[1] - pair[0]


class Item(BaseModel):
    name: str
    quantity: Annotated[int, Field(ge=1)]
    when: datetime


class Order(BaseModel):
    customer: str
    items: list[Item]


class Receipt(BaseModel):
    customer: str
    quantity: int
    last: datetime | None


def receipt(order: Order) -> Receipt:
    """A model as the whole body, a model as the result."""
    last = max((item.when for item in order.items), default=None)
    return Receipt(
        customer=order.customer, quantity=sum(i.quantity for i in order.items), last=last
    )


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Label(TypedDict):
    text: str
    size: int


@dataclasses.dataclass
class Placed:
    point: Point
    label: Label
    at: uuid.UUID


def place(point: Point, label: Label) -> Placed:
    """A dataclass and a TypedDict in, a dataclass holding them out."""
    return Placed(point, label, uuid.UUID(int=7))


class Shape(enum.Enum):
    ROUND = "round"


def results() -> dict:
    """Results pydantic serializes, numpy inside them."""
    return {
        "point": Point(np.float64(1.5), 2.0),
        "shape": Shape.ROUND,
        "when": date(2026, 1, 2),
        "money": Decimal("1.10"),
        "scores": np.arange(3, dtype=np.int32),
        "nested": [{"m": np.array([[1.0, 2.0]])}],
    }


def moments(
    x: npt.NDArray[np.float32],
    weights: np.ndarray | None = None,
    levels: npt.NDArray[np.uint8] | None = None,
) -> dict:
    """numpy arrays in: float32 as the hint says, numpy's own dtype for an ndarray. What they
    are, not sums of them: any array the type allows is answered (a sum may overflow)."""
    return {
        "shape": x.shape,
        "dtype": str(x.dtype),
        "first": float(x.flat[0]) if x.size else None,
        "weights": None if weights is None else [str(weights.dtype), weights.shape],
        "levels": None if levels is None else [str(levels.dtype), levels.tolist()],
    }


def scaled(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """An array in and out, as a model's outputs often are; halved, which no float32 overflows
    (the fuzzing sends any)."""
    return x / np.float32(2)


def nan_inside(a: float) -> Point:
    """A NaN inside a dataclass: still a 500 naming the function."""
    return Point(float("nan"), a)


def size(data: bytes) -> dict:
    """The raw body, whatever its type."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()[:16]}


def column_total(data: bytes, column: int = 0) -> float:
    """A CSV file as the body, a column of it summed; the column from the query string."""
    text = data.decode()  # not UTF-8: a ValueError, a 400
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:  # a field past csv's size limit, say: the client's, a 400
        raise ValueError(f"the body is not CSV: {error}") from None
    if any(not 0 <= column < len(row) for row in rows[1:]):
        raise ValueError(f"a row has no column {column}")
    return math.fsum(float(row[column]) for row in rows[1:])


def describe(doc: File) -> dict:
    """One file of a form (or the body): its name, type and size."""
    return {"filename": doc.filename, "type": doc.content_type, "bytes": len(doc.data)}


def describe_all(docs: list[File], note: str = "") -> dict:
    """Several files of one field, and a text field."""
    return {"note": note, "files": [[d.filename, len(d.data)] for d in docs]}


def tagged(
    doc: File,
    k: int = 1,
    weights: list[float] | None = None,
    day: date | None = None,
    meta: dict[str, int] | None = None,
) -> dict:
    """A file and the fields a form gives beside it: a list, a date, a dict."""
    return {"bytes": len(doc.data), "k": k, "weights": weights, "day": day, "meta": meta}


def dated(doc: File, day: date) -> dict:
    """A file and a date it needs: in the query string beside a raw body, or a form's field."""
    return {"bytes": len(doc.data), "day": day}


def classes(names: dict[int, str]) -> list:
    """A dict keyed by integers, as a model's class ids are."""
    return sorted(names.items())


def switch(v: Literal[True, "auto"]) -> dict:
    """A choice of true or a word, as a model's options often are."""
    return {"v": v}


class Keyed(BaseModel):
    key: int | str
    value: float | list[float]


def keyed(entry: Keyed) -> dict:
    """Unions, as a model's inputs often are: an id of either kind, one value or several."""
    return {"key": entry.key, "value": entry.value}


class Labels(BaseModel):
    names: dict[int, str]
    v: Literal[True, "auto"] = "auto"


def labelled(labels: Labels) -> dict:
    """The same two inside a model, read as they are as parameters."""
    return {"names": sorted(labels.names.items()), "v": labels.v}


async def later(a: float, wait: float = 0.0) -> float:
    """An async function: awaits, then doubles."""
    await asyncio.sleep(wait)
    return 2 * a


def note(tag: str, text: str) -> None:
    with open(TICKS / tag, "a") as file:
        file.write(text + "\n")


def count(n: int = 5, every: float = 0.1, tag: str = "") -> Iterator[int]:
    """0, 1, ... n-1, one every `every` s: a model that streams its output."""
    if n < 0:
        raise ValueError("n must be >= 0")
    try:
        for i in range(n):
            if i:
                time.sleep(every)
            if tag:
                note(tag, f"{i} {time.time()}")
            yield i
    finally:  # GeneratorExit when the client went away
        if tag:
            note(tag, "closed")


async def tokens(text: str, every: float = 0.05) -> AsyncIterator[dict]:
    """An async generator: the words of a text, one at a time."""
    for i, word in enumerate(text.split()):
        await asyncio.sleep(every)
        yield {"index": i, "token": word}


def breaks(n: int = 2, how: Literal["bug", "value", "nan"] = "bug") -> Iterator[float]:
    """Yields n items, then fails: a bug, a ValueError (the client's, by this project's rule) or
    an item JSON cannot carry."""
    for i in range(n):
        yield float(i)
    if how == "nan":
        yield float("nan")
    if how == "value":
        raise ValueError(f"no reading past {n}")
    raise RuntimeError("the model fell over")


ENDPOINTS = {
    "choose": choose,
    "row-sums": row_sums,
    "best": best,
    "schedule": schedule,
    "price": price,
    "bounded": bounded,
    "span": span,
    "repeated": repeated,
    "receipt": receipt,
    "place": place,
    "results": results,
    "moments": moments,
    "scaled": scaled,
    "nan-inside": nan_inside,
    "size": size,
    "column-total": column_total,
    "describe": describe,
    "describe-all": describe_all,
    "tagged": tagged,
    "dated": dated,
    "classes": classes,
    "switch": switch,
    "labelled": labelled,
    "keyed": keyed,
    "later": later,
    "count": count,
    "tokens": tokens,
    "breaks": breaks,
}
os.makedirs(TICKS, exist_ok=True)
