"""foreach over a command's output: one task instance per line, evaluated when the task is ready."""
from __future__ import annotations

from harness import cli, make_project, ok, run_rows, tis_by_task as tis, tries_of

SPEC = """
tasks:
  list:
    run: "printf 'us-east-1\\neu-west-1\\nap-south-1\\n' > regions.txt"
  per_region:
    foreach: {command: "cat regions.txt"}
    run: "echo $PIPECTL_ITEM {{ item }} >> out-{{ item }}.txt"
    needs: [list]
  done:
    run: "ls out-*.txt | wc -l > count.txt"
    needs: [per_region]
"""


def test_foreach_command_maps_one_task_instance_per_line(tmp_path):
    root = make_project(tmp_path, {"fan": SPEC})
    ok(root, "trigger", "fan", "--date", "2026-04-09", "--wait", now="2026-04-10T08:00:00Z")
    got = tis(root, "fan")
    assert list(got) == ["list", "done", "per_region[0]", "per_region[1]", "per_region[2]"]
    assert [(got[f"per_region[{i}]"]["item"], got[f"per_region[{i}]"]["state"]) for i in range(3)] == [
        ("us-east-1", "success"), ("eu-west-1", "success"), ("ap-south-1", "success")]
    assert (root / "out-eu-west-1.txt").read_text() == "eu-west-1 eu-west-1\n"
    assert (root / "count.txt").read_text().strip() == "3"  # downstream waited for every instance
    assert got["done"]["state"] == "success" and [r["state"] for r in run_rows(root, "fan")] == ["success"]
    assert sorted(t["log_path"].rsplit("/", 1)[1] for t in tries_of(root, "fan") if "per_region" in t["log_path"]) == [
        "per_region[0].1.log", "per_region[1].1.log", "per_region[2].1.log"]


def test_foreach_command_with_no_output_skips_the_task(tmp_path):
    root = make_project(tmp_path, {"fan": SPEC.replace('"cat regions.txt"', '"true"')})
    ok(root, "trigger", "fan", "--date", "2026-04-09", "--wait", now="2026-04-10T08:00:00Z")
    got = tis(root, "fan")
    assert {t: (r["state"], r["reason"]) for t, r in got.items()} == {
        "list": ("success", None), "per_region": ("skipped", "foreach_empty"), "done": ("skipped", "trigger_rule")}


def test_failing_foreach_command_fails_the_task(tmp_path):
    root = make_project(tmp_path, {"fan": SPEC.replace('"cat regions.txt"', '"cat nothing-here.txt"')})
    r = cli(root, "trigger", "fan", "--date", "2026-04-09", "--wait", now="2026-04-10T08:00:00Z")
    assert r.returncode == 1
    got = tis(root, "fan")
    assert (got["per_region"]["state"], got["per_region"]["reason"]) == ("failed", "foreach_failed")
    assert got["done"]["state"] == "upstream_failed"
    assert [r["state"] for r in run_rows(root, "fan")] == ["failed"]


def test_mapped_instances_respect_max_parallel(tmp_path):
    spec = """
tasks:
  par:
    foreach: {command: "seq 1 4"}
    run: "echo start >> trace.txt; sleep 0.3; echo end >> trace.txt"
"""
    root = make_project(tmp_path, {"fan": spec}, "max_parallel = 1\n")
    ok(root, "trigger", "fan", "--date", "2026-04-09", "--wait", now="2026-04-10T08:00:00Z")
    assert (root / "trace.txt").read_text().split() == ["start", "end"] * 4
