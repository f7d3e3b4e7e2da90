"""Configs are code: nginx -t on the site file, and uWSGI's effective options as it runs them.
(unit/test_config_render.py: the site as the local stack renders it.)"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy.localstack import SITE_FILE, Stack, find_nginx
from helpers import uwsgi_app, wait_for


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
    with Stack(uwsgi_args=uwsgi_app("testapps:options")) as stack:
        status, _, body = stack.request("GET", "/options")
        # The master logs each worker's spawn as it forks it; the app may answer before the
        # second line is written, so wait for it (bounded) rather than race it.
        log_file = Path(stack.dir, "uwsgi.log")
        wait_for(
            lambda: len(re.findall(r"spawned uWSGI worker \d", log_file.read_text())) >= 2,
            10,
            message=log_file.read_text,
        )
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
        "zerg-server": socket_path + ".zerg",  # what a reload's second uWSGI takes the socket from
        "listen": "1024",
        "buffer-size": "65535",
        "harakiri": "30",
        "harakiri-graceful-timeout": "5",
        "harakiri-graceful-signal": "31",
        "socket-timeout": "10",
        "max-requests": "1000000",
        "disable-logging": "true",
        "log-4xx": "true",
        "log-5xx": "true",
        "hook-master-start": "unix_signal:15 gracefully_kill_them_all",
        "worker-reload-mercy": "40",
    }
    assert {name: options.get(name) for name in expected} == expected
    # The memory guard is the app's, looking once a second on the master's timer, not uWSGI's
    # reload-on-rss, which reads /proc after every request.
    assert "reload-on-rss" not in options
    assert options["environ"]["MODELSERVER_MAX_RSS_MB"] == "512"
    # What the kernel granted, and the mode uWSGI ran in, from its own startup log.
    assert "your server socket listen backlog is limited to 1024 connections" in log
    assert "*** Operational MODE: preforking ***" in log
    assert len(re.findall(r"spawned uWSGI worker \d", log)) == 2


def test_uwsgi_with_threads_hands_the_deadline_to_the_app():
    # MODELSERVER_THREADS, as the docs say to batch: uWSGI's harakiri off, its 30 s the app's.
    with Stack(uwsgi_args=uwsgi_app("testapps:options"), env={"MODELSERVER_THREADS": "4"}) as stack:
        status, _, body = stack.request("GET", "/options")
    assert status == 200, body
    options = json.loads(body)
    assert (options["threads"], options["harakiri"]) == ("4", "0")
    assert options["harakiri-graceful-timeout"] == "5"
    assert options["environ"]["MODELSERVER_DEADLINE_SECONDS"] == "30"
