"""The fleet files (Grafana dashboard, Prometheus rules and scrape example) against the real
picker's /metrics and Debian's promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator, Set

from conftest import REPO, picker_bin

DASHBOARD = REPO / "packaging" / "grafana" / "picker-dashboard.json"
PROMETHEUS = REPO / "packaging" / "prometheus"
RULES = PROMETHEUS / "picker-rules.yml"


def promtool(*args: str) -> subprocess.CompletedProcess:
    tool = shutil.which("promtool")
    assert tool, "promtool is needed: packaging/host-deps.sh --test installs Debian's prometheus"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=120)


def exprs(node: object) -> Iterator[str]:
    """Every PromQL string in the dashboard: targets' expr, the variables' queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            elif key == "query" and isinstance(value, dict) and "query" in value:
                yield value["query"]
            else:
                yield from exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from exprs(item)


def names(text: str) -> Set[str]:
    return set(re.findall(r"\bpicker_[a-z0-9_]+\b", text))


def test_every_metric_the_dashboard_and_rules_query_exists_in_metrics(start_picker):
    # With auth on, so that picker_auth_failed_total is served too; /metrics exempt, as a
    # fleet's Prometheus would have it.
    hashed = subprocess.run(
        [picker_bin(), "hash-password"], input="pw\n", capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout.strip()
    p = start_picker(stream=[f'auth-users = {{ prometheus = "{hashed}" }}',
                             'auth-exempt = ["/metrics"]'])
    served = {line.split("{")[0].split(" ")[0] for line in p.get("/metrics").splitlines()
              if line and not line.startswith("#")}

    dashboard = json.loads(DASHBOARD.read_text())
    queried = set().union(*(names(e) for e in exprs(dashboard)))
    ruled = names(RULES.read_text())
    # What the issue asks the dashboard and the rules to show.
    for name in ("picker_frames_captured_total", "picker_frames_encoded_total",
                 "picker_stream_clients", "picker_camera_frame_seconds_bucket",
                 "picker_encode_frame_seconds_bucket", "picker_frames_dropped_total",
                 "picker_camera_restarts_total", "picker_camera_online",
                 "picker_auth_failed_total", "picker_connections_refused_total"):
        assert name in queried, name
    for name in ("picker_camera_online", "picker_camera_restarts_total",
                 "picker_frames_captured_total", "picker_connections_refused_total"):
        assert name in ruled, name
    assert not (queried | ruled) - served, f"not in /metrics: {sorted((queried | ruled) - served)}"


def test_the_dashboard_shows_one_or_many_pis_by_instance():
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    instance = variables["instance"]
    assert instance["multi"] and instance["includeAll"]
    assert "label_values(picker_camera_online, instance)" in instance["definition"]
    targets = [t for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(targets) >= 15
    for t in targets:
        assert 'instance=~"$instance"' in t["expr"], t["expr"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_promtool_checks_the_rules_and_their_unit_tests_pass():
    out = promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout
    out = promtool("test", "rules", str(PROMETHEUS / "picker-rules.test.yml"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_scrape_config_example_is_valid(tmp_path: Path):
    # As installed, it names the rules under /usr/share/picker; here, the repository's copy.
    text = (PROMETHEUS / "prometheus-picker.yml").read_text()
    assert "/usr/share/picker/prometheus/picker-rules.yml" in text
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/usr/share/picker/prometheus/picker-rules.yml", str(RULES)))
    out = promtool("check", "config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr
