"""`atp --role=worker` as a real process: runs the configured executors over gRPC."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import yaml

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from tests.executors.webhook import Recorder
from tests.waiting import wait_for


def test_worker_role_posts_to_webhook_and_drains_on_sigterm(server_process, tmp_path: Path) -> None:
    with Recorder() as hook:
        config = tmp_path / "atp.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "topics": {
                        "hooks": {"executor": "http", "url": hook.url + "/ok"},
                        "gone": {
                            "executor": "http",
                            "url": hook.url + "/missing",
                            "visibility_timeout_ms": 5000,
                        },
                    }
                }
            )
        )
        log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115 - closed below
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance",
                "--role=worker",
                "--workers=1",
                f"--config={config}",
                f"--server-addr={server_process.address}",
            ],
            stdout=log,
            stderr=log,
            env=os.environ,
        )
        try:
            with grpc.insecure_channel(server_process.address) as channel:
                stub = pb_grpc.DelayQueueServiceStub(channel)
                stub.Enqueue(pb.EnqueueRequest(topic="hooks", payload='{"hello": 1}', id="h1"))
                stub.Enqueue(pb.EnqueueRequest(topic="gone", payload="x", id="g1"))
                assert wait_for(lambda: len(hook.requests) >= 2), (
                    tmp_path / "worker.log"
                ).read_text()
                assert wait_for(
                    lambda: stub.GetTask(pb.GetTaskRequest(id="h1")).state == pb.SUCCEEDED
                )
                assert wait_for(lambda: stub.GetTask(pb.GetTaskRequest(id="g1")).state == pb.DEAD)
                posted = next(r for r in hook.requests if r["path"] == "/ok")
                assert (
                    posted["body"] == '{"hello": 1}' and posted["headers"]["X-Atp-Task-Id"] == "h1"
                )
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(20) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
            log.close()
