"""Configs are code: nginx -t on the site file, and uWSGI's effective options as it runs them."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from deploy.localstack import PROJECT, SITE_FILE, Stack, find_nginx, render_site

TESTS = str(Path(__file__).parent)


def test_local_run_changes_only_listen_and_socket():
    original = SITE_FILE.read_text().splitlines()
    rendered = render_site(SITE_FILE.read_text(), 8080, "/srv/x.sock", {}).splitlines()
    changed = [(old, new) for old, new in zip(original, rendered, strict=True) if old != new]
    socket = "    server unix:/run/modelserver/modelserver.sock max_fails=0"
    assert changed == [
        (f"{socket};", "    server unix:/srv/x.sock max_fails=0;"),
        (f"{socket} backup;", "    server unix:/srv/x.sock max_fails=0 backup;"),
        ("    include /etc/modelserver/exempt-clients;", "    # none exempt"),
        # nginx's stub_status socket and the JSON access log, in the run dir (metrics.py).
        (
            "    listen unix:/run/modelserver-nginx-status.sock;",
            "    listen unix:/srv/nginx-status.sock;",
        ),
        ("    listen 5555;", "    listen 127.0.0.1:8080;"),
        (
            "    access_log /var/log/nginx/modelserver.access.log modelserver_json;",
            "    access_log /srv/nginx-access.json modelserver_json; "
            "access_log /srv/nginx-access.log;",
        ),
        ("        root /opt/modelserver/app;", f"        root {PROJECT};"),
    ]


def test_nginx_accepts_the_local_config():
    stack = Stack()
    try:
        stack.write_nginx_config()
        result = subprocess.run(
            [find_nginx(), "-t", *stack.nginx_flags()], capture_output=True, text=True
        )
    finally:
        shutil.rmtree(stack.dir)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="nginx -t with Debian's nginx.conf needs root")
def test_nginx_accepts_the_site_next_to_debians_default_site(tmp_path):
    # Debian's own nginx.conf, its default site and ours, as sites-enabled would hold them.
    conf = Path("/etc/nginx/nginx.conf").read_text()
    site = tmp_path / "modelserver"
    exempt = tmp_path / "exempt-clients"  # deploy/install.sh creates it, empty
    exempt.write_text("")
    site.write_text(SITE_FILE.read_text().replace("/etc/modelserver/exempt-clients", str(exempt)))
    shutil.copy("/etc/nginx/uwsgi_params", tmp_path)  # relative includes resolve next to -c
    conf = conf.replace(
        "include /etc/nginx/sites-enabled/*;",
        f"include /etc/nginx/sites-available/default; include {site};",
    )
    (tmp_path / "nginx.conf").write_text(conf)
    result = subprocess.run(
        [find_nginx(), "-t", "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_uwsgi_effective_options():
    # A test app that reports uwsgi.opt, run under the project's uwsgi.ini.
    with Stack(uwsgi_args=("--pythonpath", TESTS, "--module", "testapps:options")) as stack:
        status, _, body = stack.request("GET", "/options")
        # The master logs each worker's spawn as it forks it; the app may answer before the
        # second line is written, so wait for it (bounded) rather than race it.
        log_file = Path(stack.dir, "uwsgi.log")
        deadline = time.monotonic() + 10
        while len(re.findall(r"spawned uWSGI worker \d", log_file.read_text())) < 2:
            assert time.monotonic() < deadline, log_file.read_text()
            time.sleep(0.05)
        log = log_file.read_text()
        socket_path = stack.socket_path
    assert status == 200, body
    options = json.loads(body)
    expected = {
        "strict": "true",
        "master": "true",
        "need-app": "true",
        "single-interpreter": "true",
        "vacuum": "true",
        "die-on-term": "true",
        "no-orphans": "true",
        "processes": "2",
        "chmod-socket": "660",
        "socket": socket_path,
        "master-fifo": socket_path + ".fifo",
        "listen": "1024",
        "buffer-size": "65535",
        "harakiri": "30",
        "harakiri-graceful-timeout": "5",
        "harakiri-graceful-signal": "31",
        "max-requests": "1000000",
        "reload-on-rss": "512",
        "disable-logging": "true",
        "log-4xx": "true",
        "log-5xx": "true",
        "hook-master-start": "unix_signal:15 gracefully_kill_them_all",
        "worker-reload-mercy": "40",
    }
    assert {name: options.get(name) for name in expected} == expected
    # What the kernel granted, and the mode uWSGI ran in, from its own startup log.
    assert "your server socket listen backlog is limited to 1024 connections" in log
    assert "*** Operational MODE: preforking ***" in log
    assert len(re.findall(r"spawned uWSGI worker \d", log)) == 2
