"""What a running fleet serves: Prometheus totals and the worst tenants only, /status.json, and the page."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from d1sync.emulator.server import EmulatorServer
from d1sync.fleet import FleetStatus, TenantRow
from d1sync.fleet.status import totals
from d1sync.fleet.web import FleetServer, fleet_metrics, fleet_page

from ..support import TOKEN, free_port
from .conftest import MakeFleet, make_tenant


def fetch(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, "", ""


def many(count: int) -> FleetStatus:
    rows = [TenantRow(file=f"t{i:03}.db", pending=i, oldest_pending_seconds=float(i)) for i in range(count)]
    rows.append(TenantRow(file='odd "name"\n.db', pending=1000, oldest_pending_seconds=9999.0))
    return FleetStatus(rows, totals(rows, []))


def families(text: str) -> dict[str, Metric]:
    """The metric families of a Prometheus text exposition, read by prometheus_client's own parser."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family: Metric, **labels: str) -> float:
    """The value of the one sample of ``family`` with ``labels``."""
    found = [s.value for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (family.name, labels, family.samples)
    return float(found[0])


def test_metrics_carry_totals_and_only_the_worst_tenants() -> None:
    parsed = families(fleet_metrics(many(500), count=10))
    assert value(parsed["d1sync_fleet_tenants"]) == 501
    assert value(parsed["d1sync_fleet_pending"]) == sum(range(500)) + 1000
    pending = parsed["d1sync_fleet_tenant_pending"]
    assert pending.type == "gauge" and len(pending.samples) == 10
    first = pending.samples[0]
    assert first.labels == {"tenant": 'odd "name"\n.db', "file": 'odd "name"\n.db'} and first.value == 1000
    tenants = [s.labels["tenant"] for s in pending.samples]
    assert tenants[1] == "t499.db" and "t000.db" not in tenants
    for name in ("tenant_oldest_pending_seconds", "tenant_dead", "tenant_paused", "tenant_size_bytes"):
        assert len(parsed[f"d1sync_fleet_{name}"].samples) == 10


def test_the_page_lists_tenants_by_lag_and_refreshes_itself() -> None:
    page = fleet_page(many(3))
    assert "http-equiv='refresh'" in page and "&quot;name&quot;" in page
    assert page.index("odd") < page.index("t002.db") < page.index("t001.db") < page.index("t000.db")


def test_a_fleet_serves_metrics_status_json_and_its_page(
    account: EmulatorServer, tenants: Path, make_fleet: MakeFleet
) -> None:
    for name in ("a", "b"):
        make_tenant(tenants / f"{name}.db")
    fleet = make_fleet()
    fleet.drain(timeout=30)
    with FleetServer(fleet.status, port=0) as server:
        code, kind, body = fetch(server.url + "status.json")
        assert code == 200 and kind == "application/json"
        data = json.loads(body)
        assert [r["file"] for r in data["tenants"]] == ["a.db", "b.db"] and data["totals"]["pending"] == 0
        code, kind, body = fetch(server.url + "metrics")
        assert code == 200 and kind.startswith("text/plain") and "d1sync_fleet_tenants 2" in body
        code, kind, body = fetch(server.url)
        assert code == 200 and kind.startswith("text/html") and "a.db" in body
        assert fetch(server.url + "nope")[0] == 404


def test_fleet_run_serves_them_on_metrics_port(account: EmulatorServer, tenants: Path) -> None:
    make_tenant(tenants / "a.db")
    port = free_port()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "d1sync", "fleet", "run", str(tenants), "--emulator", account.url, "-q"]
        + ["--metrics-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "D1SYNC_EMULATOR_TOKEN": TOKEN},
    )
    try:
        deadline = time.monotonic() + 60  # generous: the machine is shared
        while True:
            try:
                code, _, body = fetch(f"http://127.0.0.1:{port}/status.json")
            except OSError:
                code, body = 0, ""
            served = json.loads(body) if code == 200 else {"tenants": []}
            # The page may be up before the first sweep has found the tenant: wait for it, bound and synced.
            if served["tenants"] and served["tenants"][0]["database_id"] and served["totals"]["pending"] == 0:
                break
            if time.monotonic() > deadline:
                pytest.fail("no status served in time")
            time.sleep(0.1)
        code, kind, text = fetch(f"http://127.0.0.1:{port}/metrics")
        assert code == 200 and kind.startswith("text/plain")
        parsed = families(text)
        assert value(parsed["d1sync_fleet_tenants"]) == 1 and value(parsed["d1sync_fleet_pending"]) == 0
        assert parsed["d1sync_fleet_rows_sent"].type == "counter"
        assert value(parsed["d1sync_fleet_rows_sent"]) == 5 and value(parsed["d1sync_fleet_requests"]) >= 1
        assert value(parsed["d1sync_fleet_budget_rate"]) == 1200
        assert value(parsed["d1sync_fleet_tenant_pending"], tenant="a.db") == 0
        assert value(parsed["process_cpu_seconds"]) > 0  # the daemon's own CPU, from prometheus_client
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=30)
    assert (daemon.returncode, out, err) == (0, "", "")


def test_prometheus_client_is_loaded_only_by_what_serves_metrics() -> None:
    code = (
        "import sys, d1sync.fleet, d1sync.cli.fleet, d1sync.cli.sync; "
        "assert 'prometheus_client' not in sys.modules; "
        "from d1sync.fleet import FleetServer; assert 'prometheus_client' in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stderr == ""
