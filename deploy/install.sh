#!/usr/bin/env bash
# Install modelserver as a systemd service behind nginx, on Debian or Ubuntu, from this checkout:
#
#     sudo deploy/install.sh                       # install, or upgrade in place
#     sudo MODELSERVER_PORT=8080 deploy/install.sh # nginx listens on 8080 instead of 5555
#     sudo deploy/install.sh --uninstall           # remove all of it; nginx keeps its other sites
#
# Idempotent: a second run changes nothing. After a code change it copies the new code and reloads
# the workers gracefully (no request lost); after a unit change it restarts the service.
# pip honours PIP_NO_INDEX / PIP_FIND_LINKS from the environment, for machines without PyPI.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/modelserver
APP=$PREFIX/app
VENV=$PREFIX/venv
UNIT=/etc/systemd/system/modelserver.service
SITE=/etc/nginx/sites-available/modelserver
SITE_LINK=/etc/nginx/sites-enabled/modelserver
PORT=${MODELSERVER_PORT:-5555}
# API keys, one a line (README: API keys); created empty (no key needed), kept across upgrades.
KEYS=/etc/modelserver/api-keys
# Addresses exempt from the site's per-client limits, "ADDRESS 1;" a line; created empty, kept.
EXEMPT=/etc/modelserver/exempt-clients
# Swagger UI's files for /docs: fetched by deploy/docs-viewer.sh, not copied from the checkout.
VIEWER=static/swagger-ui

code_changed=0 unit_changed=0 site_changed=0

say() { echo "modelserver: $*"; }

# put SOURCE DEST: copy as root-owned 0644 only when the content differs; say so and return 0
# when it changed, return 1 when it was already there.
put() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
        return 1
    fi
    install -D -o root -g root -m 0644 "$1" "$2"
    say "updated $2"
}

install_packages() {
    "$SRC/deploy/ensure-packages.sh" nginx python3-venv python3-dev gcc curl
}

create_user() {
    # A system user with its own group and no login, home or shell; in www-data too, so the
    # socket can be handed to nginx's group.
    if ! id -u modelserver >/dev/null 2>&1; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin --groups www-data modelserver
        say "created system user modelserver"
    fi
}

# What the service runs, by a rule rather than a list to edit: every Python module at the top
# of the checkout (algo.py, server.py, a user's my_model.py), everything under models/ and
# static/, and uwsgi.ini, requirements.txt, README.md. Tests, bench/ and deploy/ stay out.
app_files() {
    (
        cd "$SRC"
        find . -maxdepth 1 -type f -name '*.py'
        find models static -type f ! -path "$VIEWER/*" ! -path '*/__pycache__/*' 2>/dev/null
        echo uwsgi.ini requirements.txt README.md | tr ' ' '\n'
    ) | sed 's|^\./||' | sort
}

install_code() {
    install -d -o root -g root -m 0755 "$PREFIX" "$APP"
    app_files >"$WORKDIR/files"
    while read -r file; do
        put "$SRC/$file" "$APP/$file" && code_changed=1
    done <"$WORKDIR/files"
    # A file that left the checkout leaves the install too (bytecode and the viewer aside).
    (cd "$APP" && find . -type f ! -path "./$VIEWER/*" ! -path '*/__pycache__/*' | sed 's|^\./||') |
        sort | comm -23 - "$WORKDIR/files" >"$WORKDIR/gone"
    while read -r gone; do
        rm -f "$APP/$gone"
        say "removed $APP/$gone"
        code_changed=1
    done <"$WORKDIR/gone"
    if [ ! -x "$VENV/bin/python" ]; then
        # Debian's python3: the interpreter uWSGI is built against and embeds.
        /usr/bin/python3 -m venv "$VENV"
        say "created $VENV"
    fi
    # The requirements the venv was last built from are kept in it; pip runs when they differ.
    # --no-cache-dir: a cached uWSGI wheel may have been built against another Python 3.11.
    if ! cmp -s "$APP/requirements.txt" "$VENV/installed-requirements.txt"; then
        "$VENV/bin/pip" install --quiet --no-cache-dir -r "$APP/requirements.txt"
        cp "$APP/requirements.txt" "$VENV/installed-requirements.txt"
        code_changed=1
        say "installed the requirements into $VENV"
    fi
    "$SRC/deploy/docs-viewer.sh" "$VENV/bin/pip" "$APP/$VIEWER"
    if [ "$code_changed" = 1 ]; then
        # The service cannot write its own bytecode (ProtectSystem=strict): compile it here.
        "$VENV/bin/python" -m compileall -q "$APP"
    fi
}

install_operator_files() {
    # Root's to edit, readable by the service's group only: a key must not be readable by every
    # local user. Never overwritten: the keys in it are the operator's.
    install -d -o root -g root -m 0755 "$(dirname "$KEYS")"
    if [ ! -e "$KEYS" ]; then
        install -o root -g modelserver -m 0640 /dev/null "$KEYS"
        say "created the empty API key file $KEYS (no key needed until it holds one)"
    fi
    if [ ! -e "$EXEMPT" ]; then
        install -o root -g root -m 0644 /dev/null "$EXEMPT"
        say "created $EXEMPT (no client is exempt from the per-client limits)"
    fi
}

install_unit() {
    put "$SRC/deploy/systemd/modelserver.service" "$UNIT" && unit_changed=1
    if [ "$unit_changed" = 1 ]; then
        systemctl daemon-reload
    fi
}

install_site() {
    # The site file as shipped, but for the listen port; keep the old one to restore if the new
    # one fails nginx -t, so nginx never loads a broken config.
    local rendered=$WORKDIR/site backup=$WORKDIR/site.old
    sed "s/^    listen 5555;\$/    listen $PORT;/" "$SRC/deploy/nginx/modelserver" >"$rendered"
    grep -q "^    listen $PORT;\$" "$rendered" || { say "cannot set the port in the site file"; exit 1; }
    [ -f "$SITE" ] && cp -p "$SITE" "$backup"
    put "$rendered" "$SITE" && site_changed=1
    if [ "$(readlink "$SITE_LINK" 2>/dev/null)" != "$SITE" ]; then
        ln -sfn "$SITE" "$SITE_LINK"
        site_changed=1
    fi
    if ! nginx -t -q; then
        if [ -s "$backup" ]; then cp -p "$backup" "$SITE"; else rm -f "$SITE" "$SITE_LINK"; fi
        say "nginx -t failed (above); the site is not changed and nginx keeps its old config"
        exit 1
    fi
}

start_all() {
    if ! systemctl is-active --quiet nginx; then
        systemctl enable --now nginx
    elif [ "$site_changed" = 1 ]; then
        systemctl reload nginx
    fi
    if ! systemctl is-enabled --quiet modelserver; then
        systemctl enable modelserver
    fi
    if ! systemctl is-active --quiet modelserver; then
        systemctl start modelserver
    elif [ "$unit_changed" = 1 ]; then
        # New unit settings apply only to a new process; a restart is short but not seamless.
        systemctl restart modelserver
        say "restarted modelserver for its new unit"
    elif [ "$code_changed" = 1 ]; then
        # New code: uWSGI reloads gracefully (SIGHUP); requests wait in the socket's backlog.
        systemctl reload modelserver
        say "reloaded modelserver gracefully for the new code"
    fi
}

check() {
    # The proof that it works: ready means every model is loaded in the new workers.
    local url="http://127.0.0.1:$PORT/readyz"
    for _ in $(seq 50); do
        if curl -fsS "$url"; then
            return 0
        fi
        sleep 0.2
    done
    say "no answer from $url; see: journalctl -u modelserver"
    exit 1
}

uninstall() {
    if [ -f "$UNIT" ]; then
        systemctl disable --now modelserver
        rm -f "$UNIT"
        systemctl daemon-reload
        say "removed the service"
    fi
    if [ -e "$SITE" ] || [ -L "$SITE_LINK" ]; then
        rm -f "$SITE_LINK" "$SITE"
        if systemctl is-active --quiet nginx && nginx -t -q; then
            systemctl reload nginx
        fi
        say "removed the nginx site"
    fi
    if id -u modelserver >/dev/null 2>&1; then
        userdel modelserver
        say "removed the user modelserver"
    fi
    if [ -d "$PREFIX" ]; then
        rm -rf "$PREFIX"
        say "removed $PREFIX"
    fi
    if [ -d "$(dirname "$KEYS")" ]; then
        rm -rf "$(dirname "$KEYS")"
        say "removed $(dirname "$KEYS") and the API keys in it"
    fi
}

main() {
    if [ "$(id -u)" != 0 ]; then
        echo "run as root: sudo $0 $*" >&2
        exit 1
    fi
    WORKDIR=$(mktemp -d)
    trap 'rm -rf "$WORKDIR"' EXIT
    case "${1:-}" in
    --uninstall)
        uninstall
        ;;
    "")
        install_packages
        create_user
        install_code
        install_operator_files
        install_unit
        install_site
        start_all
        check
        ;;
    *)
        echo "usage: $0 [--uninstall]" >&2
        exit 2
        ;;
    esac
}

main "$@"
