"""Where models load, in-process: the load= option, the check for threads a loader leaves, the
versions /readyz names. (Under uWSGI: tests/stack/test_frameworks.py.)"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from modelserver import forking, loading
from modelserver.endpoints import serve, signature_of
from server import create_app


class Model:
    version = "7"


def load_tiny() -> Model:
    return Model()


def load_other() -> dict:
    return {}


def tiny(model: Model, a: float) -> float:
    """a, from the tiny model."""
    return a


def test_load_is_master_or_worker():
    assert serve(tiny, model=load_tiny).load == "master"
    assert signature_of("t", serve(tiny, model=load_tiny, load="worker")).model == "tiny"
    with pytest.raises(TypeError) as failure:
        signature_of("t", serve(tiny, model=load_tiny, load="gpu"))
    assert "load is 'master' or 'worker'; got 'gpu'" in str(failure.value)


def test_one_model_has_one_place():
    entries = {
        "a": serve(tiny, model=load_tiny),
        "b": serve(tiny, model=load_tiny, load="worker"),
    }
    with pytest.raises(TypeError) as failure:
        loading.loaders_of(entries)
    assert "ENDPOINTS['b']: model 'tiny' is loaded with load='master'" in str(failure.value)


def test_two_loaders_of_one_name_stop_the_start():
    def load_model() -> str:  # another module's load_model, say
        return "B"

    entries = {"a": serve(tiny, model=load_tiny), "b": serve(tiny, model=load_model)}
    entries["c"] = serve(tiny, model=load_tiny)  # the same loader again: one model
    assert sorted(loading.loaders_of(entries)) == ["model", "tiny"]
    entries["d"] = serve(tiny, model=lambda: "A")
    entries["e"] = serve(tiny, model=lambda: "B")
    with pytest.raises(TypeError) as failure:
        loading.loaders_of(entries)
    assert "ENDPOINTS['e']: its model is named '<lambda>' after its loader" in str(failure.value)
    assert "give each loader a name of its own" in str(failure.value)


def test_a_loader_that_returns_nothing_is_a_model_that_failed(caplog):
    def load_nothing() -> None:
        Model()  # the return forgotten

    client = create_app(
        {"TESTING": True, "ENDPOINTS": {"n": serve(tiny, model=load_nothing)}}
    ).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "nothing" in response.get_json()["message"]
    assert client.get("/n?a=1").status_code == 503
    assert "model 'nothing' failed to load: its loader returned None" in caplog.text


def test_the_log_says_which_model_loaded_where(caplog):
    create_app({"TESTING": True, "ENDPOINTS": {"t": serve(tiny, model=load_tiny)}})
    assert "model 'tiny' loaded in the process in" in caplog.text
    assert "version 7" in caplog.text


def test_outside_uwsgi_worker_models_load_in_the_process():
    """No fork follows (Flask's server, tests): every model loads at once, wherever it is placed."""
    entries = {
        "a": serve(tiny, model=load_tiny, load="worker"),
        "b": serve(lambda model: 1, model=load_other),
    }
    client = create_app({"TESTING": True, "ENDPOINTS": entries}).test_client()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "models": ["other", "tiny"],
        "versions": {"tiny": "7"},
    }
    assert client.get("/a?a=2").get_json() == {"result": 2.0}


def test_a_loader_that_leaves_a_thread_pool_is_named_with_the_fix():
    before = len(forking.threads())
    pool = ThreadPoolExecutor(max_workers=2)
    try:
        list(pool.map(abs, [-1, -2, -3]))
        with pytest.raises(forking.ForkUnsafe) as failure:
            forking.check_loader("pool", before)
    finally:
        pool.shutdown()
    message = str(failure.value)
    assert "model 'pool' left" in message and "thread(s) running in the uWSGI master" in message
    assert 'serve(..., model=load_pool, load="worker")' in message


def test_threads_a_loader_joined_are_not_counted():
    before = len(forking.threads())
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    forking.check_loader("joined", before)  # no exception: nothing is left running
