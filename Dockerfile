# modelserver in one image: nginx in front of uWSGI, with the same site file and uwsgi.ini as a
# host install (deploy/install.sh), run by a small PID 1 (deploy/container/entrypoint.py).
# docs/container.md: build, run, configure. `make image` builds it with podman or docker;
# `make image BASE=local` from base images made of Debian packages (no registry needed).
#
#     podman build -t modelserver .      # or docker build
#     podman run --rm -p 127.0.0.1:8080:8080 modelserver

# The runtime's base, and the build stage's (the same by default; a locally made one carries
# the compiler already). Both Debian bookworm: the venv built in one runs on the other's Python.
ARG BASE=debian:bookworm-slim
ARG BUILD_BASE=$BASE

# --- build: uWSGI compiled and the venv made against Debian's python3, the app files picked.
FROM $BUILD_BASE AS build
# Debian's packages the way a host gets them: only the missing ones, with apt.
COPY deploy/ensure-packages.sh /usr/local/bin/ensure-packages
RUN ensure-packages python3-venv python3-dev gcc libc6-dev && rm -rf /var/lib/apt/lists/*
# The pinned requirements alone first, so the slow layer is built again only when they change.
# PIP_CERT: a CA bundle for pip behind a TLS-inspecting proxy, mounted for this build only
# (docs/container.md); empty, pip uses its own.
ARG PIP_CERT=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# uWSGI first, with Python linked in (deploy/install-uwsgi.sh), as on a host.
COPY requirements.txt /tmp/requirements.txt
COPY deploy/install-uwsgi.sh /usr/local/bin/install-uwsgi
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && python3 -m venv /opt/modelserver/venv \
    && install-uwsgi /opt/modelserver/venv /tmp/requirements.txt \
    && /opt/modelserver/venv/bin/pip install --quiet --no-cache-dir -r /tmp/requirements.txt
# Swagger UI's files for /docs, as deploy/install.sh fetches them.
COPY deploy/docs-viewer.sh /tmp/docs-viewer.sh
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && /tmp/docs-viewer.sh /opt/modelserver/venv/bin/pip /opt/modelserver/app/static/swagger-ui
# The app: the files deploy/install.sh installs, by its rule (every top-level *.py, modelserver/,
# models/, static/, uwsgi.ini, ...), so a user's own model file goes in with no list to edit.
# .dockerignore keeps tests, venvs and caches out of the context.
COPY . /src
WORKDIR /src
RUN deploy/install.sh --print-app-files >/tmp/app-files \
    && while read -r file; do install -D -m 0644 "$file" "/opt/modelserver/app/$file"; done </tmp/app-files \
    && for file in deploy/install.sh deploy/nginx/modelserver deploy/container/entrypoint.py; do \
        install -D -m 0755 "$file" "/opt/modelserver/$file"; done \
    # The root filesystem may be read-only: the bytecode is compiled now, not at first import.
    && /opt/modelserver/venv/bin/python -m compileall -q /opt/modelserver/app /opt/modelserver/deploy

# --- runtime: no compiler, just Python, nginx, the venv and the app. (No libpython3.11: uWSGI
# has Python linked in.)
FROM $BASE
COPY deploy/ensure-packages.sh /usr/local/bin/ensure-packages
RUN ensure-packages python3 libstdc++6 nginx \
    && rm -rf /var/lib/apt/lists/* /usr/local/bin/ensure-packages \
    # A user of its own, by number (Kubernetes' runAsNonRoot checks a numeric user); no shell.
    && echo "modelserver:x:10001:10001:modelserver:/nonexistent:/usr/sbin/nologin" >>/etc/passwd \
    && echo "modelserver:x:10001:" >>/etc/group \
    # The one directory the service writes to: the uWSGI socket, the metrics files, nginx's
    # rendered site, pid and temp files. Give it a tmpfs when the root filesystem is read-only.
    # The image's user owns it and any user may write to it, as /tmp: a tmpfs mounted there is
    # root's, and takes the owner (podman's --read-only, less the group's and others' write) or
    # the mode (podman's --tmpfs) of this directory, or is 1777 itself (docker, an emptyDir);
    # and a platform may run the image as another user.
    && install -d -o 10001 -g 10001 -m 1777 /run/modelserver \
    # API keys, one a line (empty: no key needed): mount a file over it to require keys.
    && install -d -m 0755 /etc/modelserver && install -m 0644 /dev/null /etc/modelserver/api-keys
COPY --from=build /opt/modelserver /opt/modelserver
COPY deploy/container/nginx.conf /etc/nginx/nginx.conf
ENV PATH=/opt/modelserver/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELSERVER_API_KEYS_FILE=/etc/modelserver/api-keys \
    MODELSERVER_NGINX_STATUS=/run/modelserver/nginx-status.sock
USER 10001:10001
WORKDIR /opt/modelserver/app
# nginx's port; $PORT changes it (Cloud Run sets it).
EXPOSE 8080
# The entrypoint drains on SIGTERM: nginx stops taking connections and finishes the requests in
# flight, then uWSGI's workers finish and exit.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "/opt/modelserver/deploy/container/entrypoint.py", "health"]
ENTRYPOINT ["python3", "/opt/modelserver/deploy/container/entrypoint.py"]
