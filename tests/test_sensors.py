"""Sensors wait without a process or a slot, are poked no more often than poke_interval, time out."""
from __future__ import annotations

import http.server
import threading

from harness import epoch, make_project, ok, qd as q, run_rows, tis_by_task as tis, tries_of, wait_for

T0 = "2026-04-10T08:00:00Z"

FILE_SENSOR = """
tasks:
  wait_export:
    sensor: {file: "incoming/{{ ds }}/data.csv", min_size: 3}
    poke_interval: 1m
    timeout: 6h
  load:
    run: "echo loaded {{ ds }} >> loaded.txt"
    needs: [wait_export]
"""


def test_file_sensor_waits_across_ticks_without_a_process_then_succeeds(tmp_path):
    root = make_project(tmp_path, {"fs": FILE_SENSOR}, "max_parallel = 1\n")
    ok(root, "trigger", "fs", "--date", "2026-04-09", now=T0)
    ti = tis(root, "fs")["wait_export"]
    assert (ti["state"], ti["try_number"]) == ("pending", 0)
    assert ti["sensor_started"] == epoch(T0) or abs(ti["sensor_started"] - epoch(T0)) < 2
    first_next = ti["sensor_next"]
    assert abs(first_next - (ti["sensor_started"] + 60)) < 0.01
    # poked again only after poke_interval: a tick 30 s later leaves it alone
    ok(root, "tick", now="2026-04-10T08:00:30Z")
    assert tis(root, "fs")["wait_export"]["sensor_next"] == first_next
    for minute in ("02", "04"):
        ok(root, "tick", now=f"2026-04-10T08:{minute}:00Z")
        ti = tis(root, "fs")["wait_export"]
        assert ti["state"] == "pending" and ti["sensor_next"] > first_next
        assert tries_of(root, "fs") == []  # no try row: no process, no max_parallel slot
        assert q(root, "SELECT count(*) AS n FROM tries WHERE state IN ('starting','running')")[0]["n"] == 0
    # a file that is too small does not count
    (root / "incoming" / "2026-04-09").mkdir(parents=True)
    (root / "incoming" / "2026-04-09" / "data.csv").write_text("a")
    ok(root, "tick", now="2026-04-10T08:06:00Z")
    assert tis(root, "fs")["wait_export"]["state"] == "pending"
    (root / "incoming" / "2026-04-09" / "data.csv").write_text("a,b\n")
    ok(root, "tick", "--wait", now="2026-04-10T08:08:00Z")
    got = tis(root, "fs")
    assert {t: r["state"] for t, r in got.items()} == {"wait_export": "success", "load": "success"}
    assert got["wait_export"]["try_number"] == 0
    assert [r["state"] for r in run_rows(root, "fs")] == ["success"]
    assert (root / "loaded.txt").read_text() == "loaded 2026-04-09\n"
    assert [t["ti"] for t in tries_of(root, "fs")] == [got["load"]["id"]]


def test_a_waiting_sensor_holds_no_slot(tmp_path):
    root = make_project(tmp_path, {"fs": FILE_SENSOR, "other": 'tasks:\n  t: {run: "echo ok > other.txt"}\n'},
                        "max_parallel = 1\n")
    ok(root, "trigger", "fs", "--date", "2026-04-09", now=T0)
    ok(root, "trigger", "other", "--date", "2026-04-08", "--wait", now=T0)  # run ids are global: another date
    assert (root / "other.txt").read_text() == "ok\n"
    assert tis(root, "fs")["wait_export"]["state"] == "pending"


TIMEOUT = """
tasks:
  wait:
    sensor: {file: "never/{{ ds }}"}
    poke_interval: 5m
    timeout: 30m
    {soft}
  after:
    run: "true"
    needs: [wait]
"""


def test_sensor_times_out_with_reason_sensor_timeout(tmp_path):
    root = make_project(tmp_path, {"to": TIMEOUT.replace("{soft}", "")})
    ok(root, "trigger", "to", "--date", "2026-04-09", now=T0)
    ok(root, "tick", now="2026-04-10T08:27:00Z")
    assert tis(root, "to")["wait"]["state"] == "pending"
    ti = tis(root, "to")["wait"]
    # the last check is due at the deadline, not after it
    assert abs(ti["sensor_next"] - (ti["sensor_started"] + 1800)) < 0.01
    ok(root, "tick", now="2026-04-10T08:31:00Z")
    got = tis(root, "to")
    assert (got["wait"]["state"], got["wait"]["reason"], got["wait"]["try_number"]) == ("failed", "sensor_timeout", 0)
    assert got["after"]["state"] == "upstream_failed"
    assert [r["state"] for r in run_rows(root, "to")] == ["failed"]
    # not retried
    ok(root, "tick", now="2026-04-10T09:31:00Z")
    assert tis(root, "to")["wait"]["state"] == "failed"


def test_soft_fail_sensor_is_skipped(tmp_path):
    root = make_project(tmp_path, {"to": TIMEOUT.replace("{soft}", "soft_fail: true")})
    ok(root, "trigger", "to", "--date", "2026-04-09", now=T0)
    ok(root, "tick", now="2026-04-10T08:31:00Z")
    got = tis(root, "to")
    assert (got["wait"]["state"], got["wait"]["reason"]) == ("skipped", "sensor_timeout")
    assert got["after"]["state"] == "skipped"
    assert [r["state"] for r in run_rows(root, "to")] == ["success"]


COMMAND = """
tasks:
  ready:
    sensor: {command: "test -f flag-{{ ds }}"}
    poke_interval: 1m
  broken:
    sensor: {command: "exit 7"}
"""


def test_command_sensor_exit_codes(tmp_path):
    root = make_project(tmp_path, {"cs": COMMAND})
    ok(root, "trigger", "cs", "--date", "2026-04-09", now=T0)
    got = tis(root, "cs")
    assert got["ready"]["state"] == "pending"
    assert (got["broken"]["state"], got["broken"]["reason"]) == ("failed", "sensor_error")
    (root / "flag-2026-04-09").write_text("")
    ok(root, "tick", now="2026-04-10T08:01:05Z")
    assert tis(root, "cs")["ready"]["state"] == "success"
    assert [r["state"] for r in run_rows(root, "cs")] == ["failed"]


class _Handler(http.server.BaseHTTPRequestHandler):
    ready: set = set()

    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path in self.ready else 404)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_http_sensor_waits_for_2xx(tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        spec = f"""
tasks:
  api:
    sensor: {{http: "http://127.0.0.1:{port}/ready/{{{{ ds }}}}"}}
    poke_interval: 1m
"""
        root = make_project(tmp_path, {"hs": spec})
        ok(root, "trigger", "hs", "--date", "2026-04-09", now=T0)
        assert tis(root, "hs")["api"]["state"] == "pending"
        _Handler.ready.add("/ready/2026-04-09")
        ok(root, "tick", now="2026-04-10T08:00:30Z")
        assert tis(root, "hs")["api"]["state"] == "pending"  # poke_interval not elapsed
        ok(root, "tick", now="2026-04-10T08:01:05Z")
        assert tis(root, "hs")["api"]["state"] == "success"
    finally:
        server.shutdown()


def test_task_sensor_waits_for_the_other_pipelines_task_for_the_same_ds(tmp_path):
    up = """
schedule: "0 1 * * *"
start_date: 2026-04-01
tasks:
  export: {run: "true"}
"""
    down = """
tasks:
  wait_up:
    sensor: {task: up.export}
    poke_interval: 1m
    timeout: 5h
  use: {run: "true", needs: [wait_up]}
"""
    root = make_project(tmp_path, {"up": up, "down": down})
    ok(root, "trigger", "down", "--date", "2026-04-09", now="2026-04-10T00:30:00Z")
    assert tis(root, "down")["wait_up"]["state"] == "pending"
    # (no --wait: it would drive the waiting sensor's run too)
    ok(root, "tick", now="2026-04-10T01:00:00Z")  # up's run for ds 2026-04-09
    assert wait_for(lambda: tis(root, "up")["export"]["state"] == "success")
    ok(root, "tick", now="2026-04-10T01:02:00Z")
    assert wait_for(lambda: tis(root, "down")["use"]["state"] == "success")
    assert {t: r["state"] for t, r in tis(root, "down").items()} == {"wait_up": "success", "use": "success"}


def test_describe_wait_says_what_and_when(tmp_path):
    from pipectl.model.pipeline import Sensor, Task
    from pipectl.engine.sensors import describe_wait
    task = Task(name="w", sensor=Sensor(kind="file", target="in/{{ ds }}.csv", min_size=1, timeout=3600))
    from types import SimpleNamespace
    ti = SimpleNamespace(sensor_started=epoch(T0), sensor_next=epoch(T0) + 60)  # a task instance's sensor times
    line = describe_wait(task, ti, {"ds": "2026-04-09"}, epoch(T0) + 15)
    assert line == ("sensor waits for file in/2026-04-09.csv of at least 1 bytes; "
                    "next check at 2026-04-10T08:01:00+00:00 (in 45s); times out at 2026-04-10T09:00:00+00:00")
    assert describe_wait(task, None, {"ds": "2026-04-09"}, epoch(T0)).endswith(
        "first check at the next step; times out 1h after the first check")
