#!/usr/bin/env bash
# Install modelserver as a systemd service behind nginx, on Debian or Ubuntu, from this checkout:
#
#     sudo deploy/install.sh                       # install, or upgrade in place
#     sudo MODELSERVER_PORT=8080 deploy/install.sh # nginx listens on 8080 instead of 5555
#     sudo deploy/install.sh --uninstall           # remove all of it; nginx keeps its other sites
#
# Several machines (docs/deploy.md "Scale out"): on each host, behind load balancers 10.0.0.1 and 10.0.0.2,
#     sudo MODELSERVER_LISTEN=10.0.0.5:5555 MODELSERVER_ALLOW=10.0.0.1,10.0.0.2 deploy/install.sh
# (remembered for the next runs; MODELSERVER_METRICS_ALLOW=10.0.0.9 lets a Prometheus there read
# /metrics); on the front machine,
#     sudo deploy/install.sh --balancer 10.0.0.5:5555 10.0.0.6:5555 10.0.0.7:5555
# (TLS certificate and key from MODELSERVER_TLS_CERT / MODELSERVER_TLS_KEY, a self-signed pair
# made when there is none; MODELSERVER_SERVER_NAME for nginx's server_name). --print-site and
# --print-balancer HOST:PORT... print the site that would be installed, without root;
# --print-app-files the files of the app that would be copied.
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
# nginx's drop-in: a socket file left by a killed nginx is removed before it starts again.
NGINX_DROPIN=/etc/systemd/system/nginx.service.d/modelserver.conf
SITE=/etc/nginx/sites-available/modelserver
SITE_LINK=/etc/nginx/sites-enabled/modelserver
PORT=${MODELSERVER_PORT:-5555}
# API keys, one a line (docs/limits.md: API keys); created empty (no key needed), kept across upgrades.
KEYS=/etc/modelserver/api-keys
# Addresses exempt from the site's per-client limits, "ADDRESS 1;" a line; created empty, kept.
EXEMPT=/etc/modelserver/exempt-clients
# Swagger UI's files for /docs: fetched by deploy/docs-viewer.sh, not copied from the checkout.
VIEWER=static/swagger-ui

code_changed=0 unit_changed=0 site_changed=0

# --- Several machines (docs/deploy.md "Scale out"): the host's options behind a load balancer, and the
# balancer's install. The host options are kept in HOST_OPTIONS, so that a later run (an upgrade
# by rollout.sh) keeps them; set a variable to an empty value to drop it.
HOST_OPTIONS=$PREFIX/host-options
BALANCER_SITE=/etc/nginx/sites-available/modelserver-balancer
BALANCER_LINK=/etc/nginx/sites-enabled/modelserver-balancer
TLS_CERT=${MODELSERVER_TLS_CERT:-/etc/ssl/modelserver/balancer.crt}
TLS_KEY=${MODELSERVER_TLS_KEY:-/etc/ssl/modelserver/balancer.key}
LISTEN=${MODELSERVER_LISTEN-} ALLOW=${MODELSERVER_ALLOW-} METRICS_ALLOW=${MODELSERVER_METRICS_ALLOW-}

die() {
    say "$*" >&2
    exit 1
}

load_host_options() {
    [ -f "$HOST_OPTIONS" ] || return 0
    local name value
    while IFS='=' read -r name value; do
        case $name in
        MODELSERVER_LISTEN) LISTEN=${MODELSERVER_LISTEN-$value} ;;
        MODELSERVER_ALLOW) ALLOW=${MODELSERVER_ALLOW-$value} ;;
        MODELSERVER_METRICS_ALLOW) METRICS_ALLOW=${MODELSERVER_METRICS_ALLOW-$value} ;;
        esac
    done <"$HOST_OPTIONS"
}

save_host_options() {
    printf 'MODELSERVER_LISTEN=%s\nMODELSERVER_ALLOW=%s\nMODELSERVER_METRICS_ALLOW=%s\n' \
        "$LISTEN" "$ALLOW" "$METRICS_ALLOW" >"$WORKDIR/options"
    put "$WORKDIR/options" "$HOST_OPTIONS" || true
}

# The address part of LISTEN (ADDRESS:PORT), empty when it is a port alone.
listen_address() {
    case $LISTEN in
    *:*) local address=${LISTEN%:*} && echo "${address#[}" | tr -d ']' ;;
    esac
}

# An address or network of a list option, or die naming the option.
check_address() {
    [[ $2 =~ ^[0-9a-fA-F.:]+(/[0-9]+)?$ ]] || die "$1 must list IP addresses or networks, got '$2'"
}

# The host site, on stdout: listening on LISTEN (or PORT); with ALLOW, answering only those
# addresses (and this host itself) and trusting their X-Forwarded-For; /metrics answering this
# host (on its listen address too) and the Prometheus servers of METRICS_ALLOW.
render_host_site() {
    local listen=${LISTEN:-$PORT} geo="" realip="" metrics="" own address
    local edits=(-e "s|^    listen 5555;\$|    listen $listen;|")
    [[ $listen =~ ^([0-9.]+:|\[[0-9a-fA-F:]+\]:)?[0-9]+$ ]] ||
        die "MODELSERVER_LISTEN must be PORT or ADDRESS:PORT, got '$listen'"
    own=$(listen_address)
    [ -n "$own" ] && metrics="        allow $own;\n"
    for address in ${METRICS_ALLOW//,/ }; do
        check_address MODELSERVER_METRICS_ALLOW "$address"
        metrics+="        allow $address;\n"
    done
    if [ -n "$ALLOW" ]; then
        # This host itself may connect too: install.sh's own check, an operator's curl.
        geo="    default 0;\n    127.0.0.1 1;\n    ::1 1;"
        [ -n "$own" ] && geo+="\n    $own 1;"
        for address in ${ALLOW//,/ }; do
            check_address MODELSERVER_ALLOW "$address"
            geo+="\n    $address 1;"
            realip+="    set_real_ip_from $address;\n"
        done
        # A Prometheus may connect, for /metrics only; its X-Forwarded-For is not trusted.
        for address in ${METRICS_ALLOW//,/ }; do
            geo+="\n    $address 2;"
        done
        edits+=(-e "/^geo \$realip_remote_addr/,/^}/s|^    default 1;\$|$geo|"
            -e "s|^    real_ip_header X-Forwarded-For;\$|$realip&|")
    fi
    edits+=(-e "/^    location = \/metrics {\$/,/^    }\$/s|^        deny all;\$|$metrics&|")
    sed "${edits[@]}" "$SRC/deploy/nginx/modelserver"
}

# The balancer site, on stdout: one server line per HOST:PORT argument, with the parameters of
# the shipped file's first server line; the TLS paths and server_name from the environment.
render_balancer_site() {
    local host name=${MODELSERVER_SERVER_NAME:-_}
    [ $# -gt 0 ] || die "usage: $0 --balancer HOST:PORT [HOST:PORT ...]"
    for host; do
        [[ $host =~ ^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):[0-9]+$ ]] ||
            die "each host is HOST:PORT (e.g. 10.0.0.5:5555), got '$host'"
    done
    [[ $name =~ ^[A-Za-z0-9.*_\ -]+$ ]] || die "MODELSERVER_SERVER_NAME: not a server name: '$name'"
    [[ $TLS_CERT$TLS_KEY =~ ^/[A-Za-z0-9._/-]+$ ]] || die "TLS paths must be absolute plain paths"
    awk -v hosts="$*" '
        function server_lines(  n, list, i) {
            n = split(hosts, list, " ")
            for (i = 1; i <= n; i++) printf "    server %s%s\n", list[i], params
        }
        /# --- end of hosts/ { server_lines(); skipping = 0 }
        skipping && $1 == "server" && params == "" {
            params = $0
            sub(/^ *server [^ ]+/, "", params)
        }
        skipping { next }
        { print }
        /# --- hosts:/ { skipping = 1 }
    ' "$SRC/deploy/nginx/modelserver-balancer" |
        sed -e "s|^\(    ssl_certificate \).*;\$|\1$TLS_CERT;|" \
            -e "s|^\(    ssl_certificate_key \).*;\$|\1$TLS_KEY;|" \
            -e "s|^\(    server_name \)_;\$|\1$name;|"
}

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
# of the checkout (algo.py, registry.py, a user's my_model.py), the framework's package
# modelserver/, everything under models/ and static/, and uwsgi.ini, requirements.txt, README.md
# with the docs/ pages it links. Tests, bench/ and deploy/ stay out.
app_files() {
    (
        cd "$SRC"
        find . -maxdepth 1 -type f -name '*.py'
        find modelserver -type f -name '*.py' 2>/dev/null
        find docs -type f -name '*.md' 2>/dev/null
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
    # uWSGI built with Python linked in, when the venv's is not yet the pinned one built so.
    built=$("$SRC/deploy/install-uwsgi.sh" "$VENV" "$APP/requirements.txt")
    if [ -n "$built" ]; then
        code_changed=1
        say "$built"
    fi
    # The requirements the venv was last built from are kept in it; pip runs when they differ.
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
    local dropin_changed=0
    put "$SRC/deploy/systemd/modelserver.service" "$UNIT" && unit_changed=1
    put "$SRC/deploy/systemd/nginx-modelserver.conf" "$NGINX_DROPIN" && dropin_changed=1
    if [ "$unit_changed" = 1 ] || [ "$dropin_changed" = 1 ]; then
        systemctl daemon-reload
    fi
}

install_site() {
    # The site file as shipped, but for the listen address and the load balancer's options.
    local rendered=$WORKDIR/site
    render_host_site >"$rendered"
    grep -q "^    listen ${LISTEN:-$PORT};\$" "$rendered" ||
        die "cannot set the port in the site file"
    install_checked_site "$rendered" "$SITE" "$SITE_LINK"
}

# install_checked_site RENDERED SITE LINK: install a site and enable it; keep the old one to
# restore if the new one fails nginx -t, so nginx never loads a broken config.
install_checked_site() {
    local backup=$WORKDIR/site.old
    rm -f "$backup"
    [ -f "$2" ] && cp -p "$2" "$backup"
    put "$1" "$2" && site_changed=1
    if [ "$(readlink "$3" 2>/dev/null)" != "$2" ]; then
        ln -sfn "$2" "$3"
        site_changed=1
    fi
    if ! nginx -t -q; then
        if [ -s "$backup" ]; then cp -p "$backup" "$2"; else rm -f "$2" "$3"; fi
        say "nginx -t failed (above); the site is not changed and nginx keeps its old config"
        exit 1
    fi
}

start_nginx() {
    if ! systemctl is-active --quiet nginx; then
        systemctl enable --now nginx
    elif [ "$site_changed" = 1 ]; then
        systemctl reload nginx
    fi
}

start_all() {
    start_nginx
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
    # The proof that it works: ready means every model is loaded in the new workers (asked at
    # the private address, when the host listens on one).
    local address listen=${LISTEN:-$PORT}
    address=$(listen_address)
    case $address in *:*) address="[$address]" ;; esac
    check_url "http://${address:-127.0.0.1}:${listen##*:}/readyz" "journalctl -u modelserver"
}

# check_url URL WHERE: wait up to 10 s for a 2xx from URL; WHERE says where to look if none.
check_url() {
    for _ in $(seq 50); do
        if curl -fsSgk "$1"; then
            return 0
        fi
        sleep 0.2
    done
    die "no answer from $1; see: $2"
}

# --- Several machines: the balancer's install (docs/deploy.md "Scale out").
# A self-signed pair when neither file is there, so the balancer starts; replace it with a real
# certificate (same paths, or MODELSERVER_TLS_CERT / MODELSERVER_TLS_KEY) and run this again.
make_tls_pair() {
    [ -f "$TLS_CERT" ] && [ -f "$TLS_KEY" ] && return 0
    [ -e "$TLS_CERT" ] || [ -e "$TLS_KEY" ] && die "only one of $TLS_CERT and $TLS_KEY exists"
    install -d -m 0755 "$(dirname "$TLS_CERT")"
    install -d -m 0700 "$(dirname "$TLS_KEY")"
    (umask 077 && openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=$(hostname)" \
        -keyout "$TLS_KEY" -out "$TLS_CERT" 2>/dev/null)
    say "made a self-signed certificate $TLS_CERT; replace it with a real one"
}

install_balancer() {
    "$SRC/deploy/ensure-packages.sh" nginx curl openssl
    render_balancer_site "$@" >"$WORKDIR/balancer"
    make_tls_pair
    install_checked_site "$WORKDIR/balancer" "$BALANCER_SITE" "$BALANCER_LINK"
    # Debian's welcome page also listens on port 80: on a front machine, only the balancer does.
    if [ -L /etc/nginx/sites-enabled/default ]; then
        rm /etc/nginx/sites-enabled/default
        site_changed=1
        say "disabled nginx's default site (sites-enabled/default)"
    fi
    start_nginx
    check_url "https://127.0.0.1/readyz" \
        "/var/log/nginx/modelserver-balancer.log and error.log"
}

# remove_site SITE LINK: remove an installed site and have a running nginx drop it; false if
# there was none.
remove_site() {
    [ -e "$1" ] || [ -L "$2" ] || return 1
    rm -f "$2" "$1"
    if systemctl is-active --quiet nginx && nginx -t -q; then
        systemctl reload nginx
    fi
}

uninstall() {
    if [ -f "$UNIT" ]; then
        systemctl disable --now modelserver
        rm -f "$UNIT"
        systemctl daemon-reload
        say "removed the service"
    fi
    if [ -f "$NGINX_DROPIN" ]; then
        rm -f "$NGINX_DROPIN"
        rmdir --ignore-fail-on-non-empty "$(dirname "$NGINX_DROPIN")"
        systemctl daemon-reload
        say "removed $NGINX_DROPIN"
    fi
    remove_site "$SITE" "$SITE_LINK" && say "removed the nginx site"
    remove_site "$BALANCER_SITE" "$BALANCER_LINK" &&
        say "removed the balancer site (its certificate stays: $TLS_CERT)"
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
    # What would be installed, printed without root or changes (tests render the sites this way).
    case "${1:-}" in
    --print-site)
        render_host_site
        return
        ;;
    --print-balancer)
        shift
        render_balancer_site "$@"
        return
        ;;
    --print-app-files)
        # The Dockerfile copies the app by this same rule.
        app_files
        return
        ;;
    esac
    if [ "$(id -u)" != 0 ]; then
        echo "run as root: sudo $0 $*" >&2
        exit 1
    fi
    WORKDIR=$(mktemp -d)
    trap 'rm -rf "$WORKDIR"' EXIT
    case "${1:-}" in
    --balancer)
        shift
        install_balancer "$@"
        ;;
    --uninstall)
        uninstall
        ;;
    "")
        install_packages
        create_user
        install_code
        install_operator_files
        install_unit
        load_host_options
        install_site
        save_host_options
        start_all
        check
        ;;
    *)
        echo "usage: $0 [--uninstall | --balancer HOST:PORT... | --print-site |" \
            "--print-balancer HOST:PORT... | --print-app-files]" >&2
        exit 2
        ;;
    esac
}

main "$@"
