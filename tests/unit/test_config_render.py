"""Configs are code: the site file as the local stack renders it changes only what it must."""

from deploy.localstack import COMBINED_FORMAT, PROJECT, SITE_FILE, render_site


def test_local_run_changes_only_listen_and_socket():
    original = SITE_FILE.read_text().splitlines()
    rendered = render_site(SITE_FILE.read_text(), 8080, "/srv/x.sock", {}).splitlines()
    changed = [(old, new) for old, new in zip(original, rendered, strict=True) if old != new]
    socket = "    server unix:/run/modelserver/modelserver.sock max_fails=0"
    assert changed == [
        (f"{socket};", "    server unix:/srv/x.sock max_fails=0;"),
        (f"{socket} backup;", "    server unix:/srv/x.sock max_fails=0 backup;"),
        ("    include /etc/modelserver/exempt-clients;", "    # none exempt"),
        # make run's second log, in nginx's combined format with the JSON log's request line.
        (
            "log_format modelserver_json escape=json",
            f"{COMBINED_FORMAT}log_format modelserver_json escape=json",
        ),
        # nginx's stub_status socket and the JSON access log, in the run dir (metrics.py).
        (
            "    listen unix:/run/modelserver-nginx-status.sock;",
            "    listen unix:/srv/nginx-status.sock;",
        ),
        ("    listen 5555;", "    listen 127.0.0.1:8080;"),
        (
            "    access_log /var/log/nginx/modelserver.access.log modelserver_json;",
            "    access_log /srv/nginx-access.json modelserver_json; "
            "access_log /srv/nginx-access.log modelserver_combined;",
        ),
        ("        root /opt/modelserver/app;", f"        root {PROJECT};"),
    ]
