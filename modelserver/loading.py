"""Models, loaded once: in the uWSGI master before the workers fork (load="master": one copy
shared by all workers) or in each worker after its fork (load="worker": a copy each, for
libraries that start threads); and the readiness they decide."""

import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response
from werkzeug.exceptions import ServiceUnavailable

from modelserver import forking, memoryguard
from modelserver.answers import json_response
from modelserver.endpoints import Endpoint, model_name

# Set by modelserver/handover.py for the instance it starts beside the running one, on the
# same socket: there a model that fails to load stops the instance before a worker of it takes
# a request (it would answer 503), and the running code keeps serving.
HANDOVER = os.environ.get("MODELSERVER_HANDOVER") == "1"


@dataclass(frozen=True)
class Loader:
    """A model's loader and where it runs (Endpoint.load)."""

    load: Callable[[], object]
    where: str


def loaders_of(entries: dict) -> dict[str, Loader]:
    """Each model's name and loader, from the registry's entries; TypeError if two loaders
    have one name (one model would serve both), or two endpoints of one model place it
    differently."""
    loaders: dict[str, Loader] = {}
    for name, entry in entries.items():
        if not isinstance(entry, Endpoint) or entry.model is None:
            continue
        model = model_name(entry.model)
        loader = Loader(entry.model, entry.load)
        if loaders.setdefault(model, loader).load != loader.load:
            raise TypeError(
                f"ENDPOINTS[{name!r}]: its model is named {model!r} after its loader, as another "
                "endpoint's model from another loader is: one of them would serve both; give "
                "each loader a name of its own (def load_iris(), def load_digits(); not a lambda)"
            )
        if loaders[model].where != loader.where:
            raise TypeError(
                f"ENDPOINTS[{name!r}]: model {model!r} is loaded with "
                f"load={loaders[model].where!r} by another endpoint; give both the same load="
            )
    return loaders


def load_models(app: Flask, loaders: dict[str, Loader]) -> dict[str, object]:
    """Each model, loaded once; one that fails is logged and left out, so its endpoints answer
    503 and /readyz says why, while the others keep serving.

    Under uWSGI's master the "worker" models are left to each worker, which loads them after
    its fork, before it takes a request; the master stops (forking.ForkUnsafe) if a loader left
    threads behind. Elsewhere (lazy-apps, Flask's server, tests) all load here, in this process.
    """
    models: dict[str, object] = {}
    master = forking.before_fork()
    here = {n: loader for n, loader in loaders.items() if not master or loader.where == "master"}
    for name, loader in here.items():
        before = len(forking.threads())
        load_one(app.logger, models, name, loader)
        if master:
            forking.check_loader(name, before)
    if HANDOVER and (failed := [name for name in here if name not in models]):
        raise RuntimeError(f"the new code's model(s) {', '.join(failed)} failed to load")
    if master:
        forking.check_master()
        forking.install_direct_exit()
        later = {n: loader for n, loader in loaders.items() if n not in here}
        if later:
            forking.after_fork(lambda: load_in_worker(app, models, later))
    return models


def load_in_worker(app: Flask, models: dict, loaders: dict[str, Loader]) -> None:
    """In a newly forked worker: its own copy of each "worker" model, and its metric."""
    metrics = app.extensions.get("metrics")
    for name, loader in loaders.items():
        load_one(app.logger, models, name, loader)
        if metrics is not None:
            metrics.model_loaded.labels(name).set(1 if name in models else 0)
    memoryguard.models_loaded()
    if HANDOVER and any(name not in models for name in loaders):
        app.logger.error("the new code's models failed to load in a worker: it stops")
        os.kill(os.getppid(), signal.SIGTERM)  # the new uWSGI's master: the handover fails
        os._exit(1)


def load_one(logger: logging.Logger, models: dict, name: str, loader: Loader) -> None:
    """models[name] = the loader's model, or nothing (logged) if it fails."""
    start = time.monotonic()
    try:
        model = loader.load()
    except Exception:  # any failure of a model file or its code means "not ready"
        logger.exception("model %r failed to load", name)
        return
    if model is None:  # no model to pass: most likely a loader without its return
        logger.error("model %r failed to load: its loader returned None", name)
        return
    models[name] = model
    version = version_of(model)
    logger.info(
        "model %r loaded in the %s in %.2f s%s",
        name,
        loader.where if forking.uwsgi is not None else "process",
        time.monotonic() - start,
        "" if version is None else f", version {version}",
    )


def version_of(model: object) -> str | None:
    """The model's `version` attribute, if it has one: which model answers, after an update."""
    version = getattr(model, "version", None)
    return None if version is None else str(version)


def readiness(names: list[str], loaded: dict) -> Response:
    """200 naming every model (and the versions of those that have one) when all are loaded,
    else 503 naming the missing ones."""
    missing = [name for name in names if name not in loaded]
    if missing:
        raise ServiceUnavailable(f"not ready: model(s) not loaded: {', '.join(missing)}")
    answer: dict = {"status": "ready", "models": sorted(loaded)}
    versions = {name: v for name in sorted(loaded) if (v := version_of(loaded[name])) is not None}
    if versions:
        answer["versions"] = versions
    return json_response(answer)
