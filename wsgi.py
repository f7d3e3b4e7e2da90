import gc

from server import create_app

app = create_app()
# uWSGI imports this in the master, then forks the workers (no lazy-apps): they share the app and
# its models copy-on-write. Freezing moves every object so far out of the collector's reach, so
# a worker's collections never write to (and so copy) the pages it shares with the others.
gc.freeze()
