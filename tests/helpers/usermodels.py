"""Functions as a user writes them in algo.py, and the registry that serves them: what the
framework's tests serve instead of the project's demos, so that they hold for any model."""

import math

import numpy as np
from PIL import Image

from modelserver.endpoints import serve


def sentiment(text: str, times: int = 1) -> dict:
    """How positive a text is, from -1 to 1, repeated `times` times.

    Counts the good and bad words it knows.
    """
    words = text.lower().split()
    score = sum(word in {"good", "great"} for word in words) - sum(word == "bad" for word in words)
    return {"score": max(-1, min(1, score)) * times, "words": len(words)}


def norm(values: list[float]) -> float:
    """The Euclidean length of a vector."""
    length = math.hypot(*values)
    if math.isinf(length):
        raise OverflowError("the length overflows a 64-bit float")
    return length


def flags(on: bool, labels: list[str], weights: list[int] | None = None) -> list:
    """The labels when on, each with its weight (1 when none are given)."""
    if weights is not None and len(weights) != len(labels):
        raise ValueError(f"weights has {len(weights)} values for {len(labels)} labels")
    return [[label, (weights or [1] * len(labels))[i]] for i, label in enumerate(labels)] * on


def classify(x: float, y: float) -> object:
    """A scikit-learn-like answer: numpy scalars and arrays."""
    return {
        "label": np.int64(x > y),
        "scores": np.array([x, y]),
        "ok": np.bool_(1),
    }


def nan_result(a: float) -> float:
    """A model that breaks on some input: NaN, which JSON cannot carry."""
    return float("nan") if a > 1 else a


def broken(a: float) -> float:
    """A model with a bug: it fails on every call."""
    return {}["missing"]


CALLS: list[int] = []  # the batch size of each call of the vectorised function below


def load_iris() -> object:
    """A scikit-learn classifier of iris flowers, as joblib.load would give it."""
    from sklearn.datasets import load_iris as iris_data
    from sklearn.linear_model import LogisticRegression

    data = iris_data()
    model = LogisticRegression(max_iter=1000).fit(data.data, data.target)
    model.names = data.target_names
    return model


def species(model: object, features: list[list[float]]) -> np.ndarray:
    """The species of each flower, from its four measures (cm): one call for a whole batch."""
    rows = np.asarray(features, dtype=np.float64)
    if rows.shape[1:] != (4,):
        raise ValueError(f"each row has 4 measures, got shape {rows.shape}")
    CALLS.append(len(rows))
    return model.names[model.predict(rows)]


def species_row(model: object, features: list[float]) -> str:
    """The same model a row at a time: what a batch costs without vectorising."""
    return species(model, [features])[0]


def load_broken() -> object:
    """A model whose file is missing."""
    raise OSError("models/missing.joblib: no such file")


def uses_broken(model: object, a: float) -> float:
    """Needs the model that did not load."""
    return a


def image_size(image: Image.Image, scale: float = 1.0) -> dict:
    """The size of an uploaded image, scaled."""
    return {"width": image.width * scale, "height": image.height * scale, "mode": image.mode}


ENDPOINTS = {
    "sentiment": sentiment,
    "norm": norm,
    "flags": flags,
    "classify": classify,
    "nan": nan_result,
    "broken": broken,
    "species": serve(species, model=load_iris, vectorized=True),
    "species-rows": serve(species_row, model=load_iris),
    "needs-broken": serve(uses_broken, model=load_broken),
    "size": image_size,
}


def half(a: float) -> float:
    """Half of a number: the plainest function, one float in and out."""
    return a / 2


# What a framework test serves when it needs a healthy service rather than every case above:
# functions of one number and of a list of them, one of images and one with a model, all
# answering (/readyz is 200).
SERVED = {"half": half, **{name: ENDPOINTS[name] for name in ("norm", "size", "species")}}
