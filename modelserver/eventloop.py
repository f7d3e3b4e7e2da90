"""async def functions, run to completion on an event loop of the worker's own.

A sync uWSGI worker (the default) takes one request at a time, so an async function gains no
concurrency there (with threads, each thread runs a loop of its own); it runs because model code
is written that way (an async client of another service, an async library). The loop is made in
the worker on its first use, after the fork: a loop made in the master would be shared by every
worker, its selector's file descriptors with it. The deadline still stops a call that runs too
long: harakiri's signal raises in the main thread, inside the loop (with threads, the app's
deadline raises when the loop next runs Python, and a loop asleep past its grace is killed with
its worker), and the worker that answered 504 is replaced.
"""

import asyncio
import contextlib
import functools
import inspect
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator

# By process and thread: the worker's, never the master's; and one per thread of a worker with
# threads (batching, docs/batching.md), where two requests at once cannot share one running loop.
LOOP: dict[tuple[int, int], asyncio.AbstractEventLoop] = {}


def worker_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop in this process, made on first use."""
    key = (os.getpid(), threading.get_ident())
    loop = LOOP.get(key)
    if loop is None or loop.is_closed():
        for inherited in [k for k in LOOP if k[0] != key[0]]:  # a forked worker drops them
            LOOP.pop(inherited, None)
        loop = LOOP[key] = asyncio.new_event_loop()
    return loop


def run(awaitable) -> object:
    """awaitable to its end on this thread's loop. Interrupted (the deadline's signal raises
    inside the loop), it is cancelled and let finish first: its own cleanup (a generator's
    finally) runs, and an async generator it was driving is no longer running, so it can be
    closed; the interruption then goes on as it came."""
    loop = worker_loop()
    task = asyncio.ensure_future(awaitable, loop=loop)
    try:
        return loop.run_until_complete(task)
    except BaseException:
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(task)
        raise


def drive(items: AsyncIterator) -> Iterator:
    """An async generator as a plain one: each item awaited on the worker's loop; closing this
    closes it (a client that went away stops the function)."""
    try:
        while True:
            try:
                item = run(anext(items))
            except StopAsyncIteration:
                return
            yield item
    finally:
        run(items.aclose())


def plain(func: Callable) -> Callable:
    """func as a plain function: an async def runs to completion; an async generator is driven
    item by item; any other function is returned as it is."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        def call(*args):
            return run(func(*args))

        return call
    if inspect.isasyncgenfunction(func):

        @functools.wraps(func)
        def stream(*args):
            return drive(func(*args))

        return stream
    return func


def streams(func: Callable) -> bool:
    """func is a generator, plain or async: its result is a stream of items."""
    return inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)
