#!/usr/bin/env bash
# Upgrade the modelserver hosts behind this load balancer one at a time, dropping no request.
# Run it on the balancer, with the hosts as they appear in its site:
#
#     deploy/rollout.sh 10.0.0.5:5555 10.0.0.6:5555 10.0.0.7:5555
#
# For each host in turn: run the upgrade on it (by default over ssh: git pull in its checkout
# ~/modelserver, stop its nginx gracefully, deploy/install.sh, which starts nginx again), wait
# until its /readyz answers 200, then wait until the balancer has taken it back (fail_timeout of
# its server line, plus a second) before the next one goes. It stops at the first host whose
# upgrade fails or that does not come back ready: the balancer keeps serving from the others,
# and the hosts not reached yet keep the old code.
#
# The balancer's config is not touched. A host taken out by its own graceful stop finishes its
# requests in flight and then refuses connections, which the balancer retries on the next host at
# once; marking it "down" would need an nginx reload on the balancer, and a reload drops requests
# that clients send on kept-alive connections at that instant (docs/deploy.md "Scale out").
#
# Settings, from the environment:
#   MODELSERVER_REMOTE          command that runs a shell script, read from its stdin, on the host
#                               whose address is its first argument: "$MODELSERVER_REMOTE ADDRESS
#                               sh -s" (default: ssh)
#   MODELSERVER_UPGRADE         that script (default: cd modelserver && git pull --ff-only &&
#                               sudo systemctl stop nginx && sudo deploy/install.sh, without
#                               sudo when the ssh user is root: Debian has no sudo when root
#                               has a password)
#   MODELSERVER_BALANCER_SITE   the balancer's site
#                               (default: /etc/nginx/sites-available/modelserver-balancer)
#   MODELSERVER_READY_SECONDS   how long a host may take to answer /readyz again (default 120)
set -euo pipefail

# The default upgrade, as the host's sh runs it (quoted: nothing is expanded here).
DEFAULT_UPGRADE='as_root=; [ "$(id -u)" = 0 ] || as_root=sudo
cd modelserver && git pull --ff-only && $as_root systemctl stop nginx && $as_root deploy/install.sh'
REMOTE=${MODELSERVER_REMOTE:-ssh}
UPGRADE=${MODELSERVER_UPGRADE:-$DEFAULT_UPGRADE}
SITE=${MODELSERVER_BALANCER_SITE:-/etc/nginx/sites-available/modelserver-balancer}
READY_SECONDS=${MODELSERVER_READY_SECONDS:-120}

say() { echo "rollout: $*"; }
die() {
    say "$*" >&2
    exit 1
}

# The server line of HOST:PORT in the balancer site; fails if there is none.
server_line() {
    awk -v host="$1" '$1 == "server" && $2 == host { print; found = 1 } END { exit !found }' "$SITE"
}

# Seconds until the balancer tries a host again after a failed attempt: its fail_timeout (nginx's
# default 10 s when not set), plus one.
rejoin_seconds() {
    local timeout
    timeout=$(server_line "$1" | grep -o 'fail_timeout=[0-9]*s' | tr -dc 0-9)
    echo $((${timeout:-10} + 1))
}

# ready HOST:PORT: true once its /readyz answers 200 (to the balancer, which the host allows),
# false after READY_SECONDS.
ready() {
    local deadline=$((SECONDS + READY_SECONDS))
    until curl -fsSg --max-time 2 -o /dev/null "http://$1/readyz" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

upgrade() {
    local address=${1%:*}
    address=${address#[}
    # $REMOTE is a command with its options: split on purpose.
    # shellcheck disable=SC2086
    $REMOTE "${address%]}" sh -s <<<"$UPGRADE"
}

main() {
    [ $# -gt 0 ] || die "usage: $0 HOST:PORT [HOST:PORT ...]  (the hosts as in $SITE)"
    local host
    for host; do
        server_line "$host" >/dev/null || die "$host is not a server line of $SITE"
    done
    for host; do
        say "upgrading $host"
        upgrade "$host" || die "the upgrade of $host failed; stopping here"
        ready "$host" || die "$host is not ready after $READY_SECONDS s; stopping here"
        say "$host is ready; waiting for the balancer to take it back"
        sleep "$(rejoin_seconds "$host")"
    done
    say "done: $* upgraded"
}

main "$@"
