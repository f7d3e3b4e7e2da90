"""Models loaded once, before the workers fork, and the readiness they decide."""

import logging
from collections.abc import Callable

from flask import Response
from werkzeug.exceptions import ServiceUnavailable

from modelserver.answers import json_response
from modelserver.endpoints import Endpoint, model_name


def loaders_of(entries: dict) -> dict[str, Callable[[], object]]:
    """Each model's name and loader, from the registry's entries."""
    return {
        model_name(entry.model): entry.model
        for entry in entries.values()
        if isinstance(entry, Endpoint) and entry.model is not None
    }


def load_models(logger: logging.Logger, loaders: dict) -> dict[str, object]:
    """Each model, loaded once; one that fails is logged and left out, so its endpoints answer
    503 and /readyz says why, while the others keep serving."""
    models = {}
    for name, load in loaders.items():
        try:
            models[name] = load()
        except Exception:  # any failure of a model file or its code means "not ready"
            logger.exception("model %r failed to load", name)
    return models


def readiness(names: list[str], loaded: dict) -> Response:
    """200 naming every model when all are loaded, else 503 naming the missing ones."""
    missing = [name for name in names if name not in loaded]
    if missing:
        raise ServiceUnavailable(f"not ready: model(s) not loaded: {', '.join(missing)}")
    return json_response({"status": "ready", "models": sorted(loaded)})
