"""The model path in-process: the image files the run sends, and what they cost without HTTP.

- A/B: the digit classifier of this checkout against digits.py as it was at BASELINE (before
  the image path was made faster), loaded from git into a module of its own, on the same files
  in the same process, stage by stage (decode, preprocess, predict), variants interleaved.
- The ceiling: served_decode and algo.predict_digits, what POST /predict runs, called
  in a loop by 2 processes
  (the servers' worker count) with no HTTP at all; requests/s is what a server could reach.
- A batch of 10,000 8x8 inputs through predict_batch, this checkout's and the baseline's.
"""

import io
import math
import multiprocessing
import subprocess
import time
import types
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

import algo
import digits
import registry
from bench.load import cpu_ticks, other_cpu_pct
from deploy.localstack import PROJECT
from modelserver.images import decode_image

# The last commit before the image path was made faster: the "before" of the A/B.
BASELINE = "2d6b810"
BATCH_ROWS = 10_000
LABEL = 5  # the digit both files show


def five(size: tuple[int, int], box: tuple[int, int, int, int], width: int) -> Image.Image:
    """A 5 drawn in black on white ("L"), within box = (left, top, right, bottom)."""
    image = Image.new("L", size, 255)
    pen = ImageDraw.Draw(image)
    left, top, right, bottom = box
    w, h = right - left, bottom - top
    bar, stem = (left + 0.85 * w, top), (left + 0.1 * w, top)
    belly = (left + 0.05 * w, top + 0.38 * h, left + 0.95 * w, bottom)
    pen.line([bar, stem, (left + 0.08 * w, top + 0.5 * h)], fill=0, width=width, joint="curve")
    pen.arc(belly, 200, 140, fill=0, width=width)
    return image


def encoded(image: Image.Image, format_name: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format_name, **options)
    return buffer.getvalue()


def images() -> dict[str, tuple[bytes, str]]:
    """name -> (file, Content-Type): a 28x28 PNG (MNIST's size) and a 640x480 JPEG photo."""
    drawing = five((280, 280), (80, 40, 200, 240), 20).resize((28, 28), Image.Resampling.BOX)
    # A photo: grey paper, a light gradient across, sensor noise; the digit a third as tall.
    rng = np.random.default_rng(0)
    ink = np.asarray(five((640, 480), (260, 150, 380, 330), 12), dtype=np.float64) / 255
    light = np.linspace(1.0, 0.7, 640)
    pixels = (0.15 + 0.7 * ink) * light + rng.normal(0, 0.03, ink.shape)
    photo = Image.fromarray(np.uint8(np.clip(pixels, 0, 1) * 255)).convert("RGB")
    return {
        "28x28 PNG": (encoded(drawing, "PNG"), "image/png"),
        "640x480 JPEG": (encoded(photo, "JPEG", quality=85), "image/jpeg"),
    }


def baseline_module() -> types.ModuleType | None:
    """digits.py as of BASELINE, as a module of its own; None if git cannot show it."""
    try:
        source = subprocess.run(
            ["git", "-C", str(PROJECT), "show", f"{BASELINE}:digits.py"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    module = types.ModuleType("digits_baseline")
    module.__file__ = str(PROJECT / "digits.py")  # its DEFAULT_MODEL, the same weights file
    exec(compile(source, f"{BASELINE}:digits.py", "exec"), module.__dict__)
    return module


def served_decode(data: bytes) -> Image.Image:
    """An upload decoded as POST /predict decodes it: the served decoder, with the draft (the
    reduced scale) that the registry's entry asks for."""
    return decode_image(data, registry.ENDPOINTS["predict"].draft)


def decoder(module: types.ModuleType) -> Callable[[bytes], Image.Image]:
    """How a variant decodes: the baseline with its own decode_image, this checkout as served."""
    return getattr(module, "decode_image", served_decode)


def stages(module: types.ModuleType, model, data: bytes) -> dict[str, Callable[[], object]]:
    """The serving path of one image split in its stages, each a call to time alone."""
    decode = decoder(module)
    image = decode(data)
    pixels = module.preprocess(image)
    return {
        "decode": lambda: decode(data),
        "preprocess": lambda: module.preprocess(image),
        "predict": lambda: module.predict_batch(model, pixels.reshape(1, 64)),
    }


def per_call_us(call: Callable[[], object], seconds: float) -> float:
    """Microseconds per call, calling it for about `seconds` (at least 20 times)."""
    call()  # warm
    calls, started = 0, time.perf_counter()
    while calls < 20 or time.perf_counter() - started < seconds:
        call()
        calls += 1
    return (time.perf_counter() - started) / calls * 1e6


def check_labels(modules: dict[str, types.ModuleType], model, files: dict) -> None:
    """Refuse to time a variant that reads the files as anything but the digit drawn."""
    for name, module in modules.items():
        for image_name, (data, _) in files.items():
            pixels = module.preprocess(decoder(module)(data))
            label = module.predict_batch(model, pixels[None])
            if label[0][0] != LABEL:
                raise RuntimeError(f"{name} reads the {image_name} as {label[0][0]}, not {LABEL}")


def ab_round(modules: dict[str, types.ModuleType], model, files: dict, seconds: float) -> list:
    """One round of the A/B: each image, each stage, each variant in turn; rows of µs/call."""
    rows = []
    rng = np.random.default_rng(0)
    batch = np.resize(rng.integers(0, 17, (450, 64)).astype(np.float64), (BATCH_ROWS, 64))
    for image_name, (data, _) in files.items():
        for variant, module in modules.items():
            for stage, call in stages(module, model, data).items():
                us = per_call_us(call, seconds)
                rows.append({"image": image_name, "variant": variant, "stage": stage, "us": us})
    for variant, module in modules.items():
        us = per_call_us(lambda m=module: m.predict_batch(model, batch), seconds)
        rows.append({"image": f"{BATCH_ROWS:,} 8x8 rows", "variant": variant, "stage": "batch"})
        rows[-1]["us"] = us
    return rows


def _loop(model, data: bytes, seconds: float, rates, slot: int) -> None:
    """A ceiling process: algo.predict_digits on the file for `seconds`; calls/s written back."""
    calls, started = 0, time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        algo.predict_digits(model, [served_decode(data)])
        calls += 1
    rates[slot] = calls / elapsed


def ceiling(data: bytes, seconds: float, processes: int) -> dict:
    """Calls/s of `processes` processes each calling algo.predict_digits, no HTTP: the ceiling;
    and the share of the CPU that other processes used meanwhile (as for wrk's runs)."""
    context = multiprocessing.get_context("fork")
    model = digits.load_model()  # loaded before the fork, as uWSGI does: no load in the timing
    rates = context.Array("d", processes)
    workers = [
        context.Process(target=_loop, args=(model, data, seconds, rates, slot))
        for slot in range(processes)
    ]
    before = cpu_ticks([])
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 30)
        if worker.is_alive():  # bounded: never leave one behind
            worker.kill()
            worker.join()
    # Joined, the processes' CPU time counts among this process's children's.
    other = other_cpu_pct(before, cpu_ticks([]))
    return {"rps": round(sum(rates), 1), "other_cpu_pct": other}


def pss_kb(pid: int) -> dict[str, int]:
    """Pss and Private_Dirty of a live process in kB (/proc/PID/smaps_rollup); {} if it ended."""
    try:
        rows = open(f"/proc/{pid}/smaps_rollup").read().splitlines()[1:]
    except OSError:
        return {}
    values = {name.rstrip(":"): int(kb) for name, kb, _unit in (row.split() for row in rows)}
    return {"pss_kb": values["Pss"], "private_kb": values["Private_Dirty"]}


def speedup(before: float | None, after: float | None) -> float | None:
    return round(before / after, 2) if before and after else None


def rounded(value: float) -> float:
    return round(value, 1 if value < 1000 else 0) if math.isfinite(value) else value
