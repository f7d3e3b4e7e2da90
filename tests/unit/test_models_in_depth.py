"""The fields of models, dataclasses and TypedDicts read as parameters are, whatever the model's
shape (its own validators, aliases, unions, deferred build); and what is wrong said with the
path the client sent and the text it sent."""

import json
from datetime import date, datetime
from uuid import UUID

import pytest
from pydantic import AwareDatetime, BaseModel, ConfigDict, PastDate, model_validator
from typing_extensions import TypeAliasType

from helpers import answer_of, assert_json_error
from modelserver import jsonread
from server import create_app


class Leaf(BaseModel):
    v: int


class Renamed(BaseModel):
    """Its own validator moves the client's "data" to its field "payload"."""

    payload: Leaf

    @model_validator(mode="before")
    @classmethod
    def rename(cls, data: object) -> object:
        return {"payload": data["data"]} if isinstance(data, dict) and "data" in data else data


class Checked(BaseModel):
    """A validator before its fields, which wraps them in its schema."""

    x: int

    @model_validator(mode="before")
    @classmethod
    def as_is(cls, data: object) -> object:
        return data


class Deferred(BaseModel):
    model_config = ConfigDict(defer_build=True)
    when: datetime


class Cat(BaseModel):
    lives: int


class Dog(BaseModel):
    born: date
    name: str


DayMap = TypeAliasType("DayMap", dict[int, date])


class Dated(BaseModel):
    past: PastDate | None = None
    aware: AwareDatetime | None = None
    at: datetime | None = None
    days: DayMap | None = None
    more_days: DayMap | None = None


class Weighted(BaseModel):
    weights: dict[float, str]


Id = TypeAliasType("Id", UUID)


class Tally(BaseModel):
    """A key type the schema names once and refers to twice."""

    a: dict[Id, int]
    b: dict[Id, int] = {}


def tally(t: Tally, k: int = 0) -> int:
    return sum(t.a.values())


def weighted(w: Weighted, by_id: dict[UUID, int] | None = None) -> int:
    return len(w.weights) + len(by_id or {})


def renamed(h: Renamed, k: int = 0) -> int:
    return h.payload.v


def checked(h: Checked, k: int = 0) -> int:
    return h.x


def deferred(d: Deferred) -> str:
    return d.when.isoformat()


def pet(p: Cat | Dog, k: int = 0) -> str:
    return type(p).__name__


def dated(h: Dated, k: int = 0) -> dict:
    return h.model_dump(mode="json")


ENDPOINTS = {
    "renamed": renamed,
    "checked": checked,
    "deferred": deferred,
    "pet": pet,
    "dated": dated,
    "weighted": weighted,
    "tally": tally,
}

CASES = [
    ("/renamed", {"h": {"data": {"v": 3}}}, 200, 3),
    # The path is the model's own, where a validator moved the client's fields.
    ("/renamed", {"h": {"data": {"v": "x"}}}, 400, ('h.payload.v must be an integer, got "x"',)),
    ("/renamed", {"h": {"data": {"v": 1, "typo": 1}}}, 400, ("h.payload.typo is not a field",)),
    ("/checked", {"h": {"x": 3}}, 200, 3),
    ("/checked", {"h": {"x": 3, "typo": 9}}, 400, ("h.typo is not a field of it",)),
    ("/deferred", {"when": "2026-01-02T09:30:00Z"}, 200, "2026-01-02T09:30:00+00:00"),
    ("/deferred", {"when": "1700000000"}, 400, ("when must be a datetime in ISO 8601 text",)),
    ("/pet", {"p": {"lives": 9}}, 200, "Cat"),
    (
        "/pet",
        {"p": {"born": "2020-01-02", "name": 5}},
        400,
        ("p matches none of its types: as Cat, lives is missing; as Dog, name must be a string",),
    ),
    ("/pet", {"p": 5}, 400, ("p must be an object, got 5",)),
    # A date's constraints are said with the text sent; a datetime is read as from JSON.
    (
        "/dated",
        {"h": {"past": "2099-01-01"}},
        400,
        ('h.past must be in the past, got "2099-01-01"',),
    ),
    (
        "/dated",
        {"h": {"aware": "2026-01-02T00:00:00"}},
        400,
        ('timezone info, got "2026-01-02T00:00:00"',),
    ),
    (
        "/dated",
        {"h": {"at": "2026-01-02T10:00:00+25:00"}},
        400,
        ("offset must be less than 24 hours",),
    ),
    ("/dated", {"h": {"at": "2026-01-02"}}, 400, ("h.at must be a valid datetime",)),
    (
        "/dated",
        {"h": {"days": {"1": "2026-01-02"}, "more_days": {"01": "2026-01-02"}}},
        400,
        ("key '01' of h.more_days",),
    ),
    ("/tally", {"t": {"a": {"00000000-0000-0000-0000-000000000001": 3}}}, 200, 3),
    # Keys read as another type than text stay distinct: pydantic alone kept one value of two.
    ("/weighted", {"w": {"weights": {"1": "a", "2.5": "b"}}}, 200, 2),
    (
        "/weighted",
        {"w": {"weights": {"1": "a", "1.0": "b"}}},
        400,
        ("w.weights must have distinct keys: '1' and '1.0' are the same value",),
    ),
    (
        "/weighted",
        {"w": {"weights": {}}, "by_id": {"0" * 32: 1, "00000000-0000-0000-0000-000000000000": 2}},
        400,
        ("by_id must have distinct keys",),
    ),
]


@pytest.mark.parametrize(("path", "body", "status", "expected"), CASES)
def test_models_of_every_shape(path, body, status, expected):
    client = create_app({"TESTING": True, "ENDPOINTS": ENDPOINTS}).test_client()
    response = client.post(path, data=json.dumps(body), content_type="application/json")
    if status == 200:
        assert response.status_code == 200, response.data
        assert response.get_json() == {"result": expected}
    else:
        assert_json_error(*answer_of(response), status, *expected)


def test_the_classes_are_their_own_outside_requests():
    create_app({"TESTING": True, "ENDPOINTS": ENDPOINTS})
    assert Checked.model_validate({"x": 3, "typo": 9}).x == 3  # pydantic's default: ignored
    assert Dated.model_validate({"at": "2026-01-02"}).at == datetime(2026, 1, 2)


def test_a_shape_the_in_depth_reading_cannot_build_is_served_as_pydantic_reads_it(
    monkeypatch, caplog
):
    """Never a startup failure for a type pydantic takes: the in-depth checks are a bonus."""
    monkeypatch.setattr(jsonread, "in_depth", lambda schema, inside: {"type": "no-such-type"})
    client = create_app({"TESTING": True, "ENDPOINTS": {"checked": checked}}).test_client()
    response = client.post("/checked", data='{"h": {"x": 3}}', content_type="application/json")
    assert (response.status_code, response.get_json()) == (200, {"result": 3})
    assert "is read as pydantic alone reads it, not in depth" in caplog.text
