"""async def functions, run to completion on an event loop of the worker's own.

A uWSGI worker takes one request at a time, so an async function gains no concurrency here; it
runs because model code is written that way (an async client of another service, an async
library). The loop is made in the worker on its first use, after the fork: a loop made in the
master would be shared by every worker, its selector's file descriptors with it. uWSGI's
harakiri still stops a call that runs too long: its signal raises in the main thread, inside the
loop, and the worker that answered 504 is replaced.
"""

import asyncio
import functools
import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterator

LOOP: dict[int, asyncio.AbstractEventLoop] = {}  # by process id: the worker's, never the master's


def worker_loop() -> asyncio.AbstractEventLoop:
    """This process's event loop, made on first use."""
    loop = LOOP.get(os.getpid())
    if loop is None or loop.is_closed():
        LOOP.clear()  # a forked worker drops the loop it may have inherited
        loop = LOOP[os.getpid()] = asyncio.new_event_loop()
    return loop


def run(awaitable) -> object:
    return worker_loop().run_until_complete(awaitable)


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
