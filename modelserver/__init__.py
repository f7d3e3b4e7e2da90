"""modelserver: typed Python functions served over HTTP by Flask, under uWSGI, behind nginx."""
