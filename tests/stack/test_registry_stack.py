"""The framework through the real stack: a user's functions (usermodels.py), not the project's
demos, served by nginx -> uWSGI; the table of tests/unit/test_registry.py, batches and images."""

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from helpers import upload
from helpers.user_cases import IMAGE_FORMS, JSON, PARAMS, check, image_case, rows
from modelserver.limits import MAX_BATCH


@pytest.mark.parametrize("method,path,body,expected_status,expected", PARAMS)
def test_user_functions_stack(user_stack, method, path, body, expected_status, expected):
    status, headers, response = user_stack.request(method, path, body, JSON if body else {})
    check(status, headers, response, expected_status, expected)


def test_vectorised_batch_against_a_per_row_loop(user_stack, figure):
    """The figure in docs/performance.md: a 10,000-row batch through the stack, in one call of the
    function against one call per row (usermodels.species_row)."""
    seconds = {}
    for path in ("/species", "/species-rows"):
        started = time.perf_counter()
        status, _, answer = user_stack.request("POST", path, rows(MAX_BATCH), JSON, timeout=60)
        seconds[path] = time.perf_counter() - started
        assert status == 200, answer
        assert json.loads(answer)["result"] == ["setosa"] * MAX_BATCH
    figure("10,000-row batch through the stack, vectorised (s)", f"{seconds['/species']:.3f}")
    figure(
        "10,000-row batch through the stack, a call per row (s)", f"{seconds['/species-rows']:.3f}"
    )


@pytest.mark.parametrize("form", IMAGE_FORMS)
def test_image_parameter_stack(user_stack, form):
    path, body, content_type, expected = image_case(form)
    status, headers, answer = upload(user_stack, path, body, content_type)
    check(status, headers, answer, 200, expected)


def test_a_users_image_function_takes_a_photo_of_several_mb(user_stack):
    # nginx lets 10 MB through to any function of images, not only to the demo's /predict.
    noise = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    assert len(buffer.getvalue()) > 2 * 1024 * 1024
    status, _, answer = upload(user_stack, "/size", buffer.getvalue(), "image/png")
    assert status == 200, answer
    assert json.loads(answer) == {"result": {"width": 1000, "height": 1000, "mode": "RGB"}}
