"""The fake server in a separate process (start_fake_worker / python -m rlinf_http.testing)."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import pytest

from rlinf_http import InferenceHTTPClient, InternalServerError, ServiceUnavailableError
from rlinf_http.testing import FakeConfig, FakeWorkerProcess, FaultSpec, start_fake_worker


def test_start_and_stop_worker() -> None:
    cfg = FakeConfig(served_model_name="proc-model", incremental_streaming=True, ttft_s=0.01)
    with start_fake_worker(config=cfg) as w, httpx.Client(trust_env=False, timeout=10) as c:
        assert isinstance(w, FakeWorkerProcess)
        assert w.url == f"http://127.0.0.1:{w.port}"
        info = c.get(w.url + "/server_info").json()
        assert info["served_model_name"] == "proc-model"
        assert info["incremental_streaming_output"] is True
        r = c.post(
            w.url + "/generate", json={"text": "a", "sampling_params": {"max_new_tokens": 2}}
        )
        assert r.json()["text"] == " tok0 tok1"
        assert w.proc.poll() is None
        url = w.url
    assert w.proc.poll() is not None
    with pytest.raises(httpx.ConnectError), httpx.Client(trust_env=False, timeout=2) as c:
        c.get(url + "/health")


def test_worker_gets_control_and_dataplane_knobs() -> None:
    cfg = FakeConfig(
        weight_version="v0",
        worker_id="w-1",
        enable_lora=False,
        embedding_dim=4,
        weight_update_s=0.01,
        load_format="dummy",
        max_running_requests=7,
    )
    with start_fake_worker(config=cfg) as w, httpx.Client(trust_env=False, timeout=10) as c:
        info = c.get(w.url + "/model_info").json()
        assert (info["weight_version"], info["load_format"]) == ("v0", "dummy")
        r = c.post(w.url + "/v1/embeddings", json={"input": "a"})
        assert r.headers["x-fake-worker"] == "w-1"
        assert len(r.json()["data"][0]["embedding"]) == 4
        r = c.post(w.url + "/load_lora_adapter", json={"lora_name": "a", "lora_path": "/a"})
        assert r.status_code == 400
        loads = c.get(w.url + "/v1/loads").json()["loads"][0]
        assert loads["max_running_requests"] == 7
        # a failing weight update injected over HTTP into the worker process
        fault = {"path": "/update_weights_from_disk", "weight_update_error": "flush"}
        assert c.post(w.url + "/_fake/faults", json=fault).status_code == 200
        r = c.post(
            w.url + "/update_weights_from_disk", json={"model_path": "/m", "weight_version": "v1"}
        )
        assert r.status_code == 400 and "Cache flush failed" in r.json()["message"]
        assert c.get(w.url + "/model_info").json()["weight_version"] == "v1"


def test_worker_exits_when_stdin_closes() -> None:
    w = start_fake_worker()
    try:
        assert w.proc.stdin is not None
        w.proc.stdin.close()  # what happens when the parent dies
        w.proc.wait(10)
        assert w.proc.returncode is not None
    finally:
        w.stop()


def test_cli_prints_url_first() -> None:
    cmd = [
        sys.executable,
        "-m",
        "rlinf_http.testing",
        "serve",
        "--port",
        "0",
        "--model-name",
        "cli",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        assert line.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 10
        with httpx.Client(trust_env=False, timeout=2) as c:
            while True:
                try:
                    d = c.get(line + "/get_model_info").json()
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        assert d["served_model_name"] == "cli"
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0  # SIGTERM handled as a clean shutdown


def test_worker_start_failure_reports_log() -> None:
    with pytest.raises(RuntimeError, match="did not become ready"):
        start_fake_worker(extra_args=["--no-such-flag"], ready_timeout=10)


def test_fault_a_worker_process_without_raw_http() -> None:
    # issue 21, item 5: a helper, not a raw POST to /_fake/faults
    with start_fake_worker() as worker, InferenceHTTPClient(worker.url, max_retries=0) as client:
        assert (
            worker.add_faults(FaultSpec(path="/model_info", status=500, body={"error": "boom"}))
            == 1
        )
        with pytest.raises(InternalServerError, match="boom"):
            client.model_info()
        client.model_info()  # times=1: used up
        assert worker.add_faults(FaultSpec(path="/flush_cache", status=503, times=None)) == 1
        for _ in range(2):
            with pytest.raises(ServiceUnavailableError):
                client.flush_cache()
        assert worker.clear_faults() == 1
        assert client.flush_cache().flushed
        with pytest.raises(TypeError):
            worker.add_faults({"path": "/x"})  # type: ignore[arg-type]
        client.pause_generation("retract")
        assert worker.control_state()["paused"] == "retract"
        client.continue_generation()
        assert worker.control_state()["paused"] is None
