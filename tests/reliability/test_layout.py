"""The whole layout past one machine (README "Deployment past one machine", deploy/compose.yaml):
two `theracharge serve` instances, two `theracharge worker` Celery workers, PostgreSQL and
Redis on loopback, and the sandbox EHR behind the fault proxy.

Hooks and notifications for the same encounters go to both instances; one worker is SIGKILLed
while it holds a day; Redis is killed (it keeps nothing on disk) and started empty while
notifications arrive. In the end every notification is done once in effect, the killed worker's
notification was taken over and completed, the EHR holds exactly one ChargeItem per line, and a
backfill over the same dates, run on the workers, finds every day unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, text

from plugin.config.files import load_settings
from tests.ehr import Ehr, free_port, load_sample, running_ehr
from tests.helpers.stack import layout_env, notifications, notify, wait_until_done
from tests.pg import running_postgres
from tests.redis_server import RedisServer, running_redis
from tests.reliability.conftest import (
    ISSUER,
    KID,
    Stack,
)
from tests.reliability.faults import FaultProxy
from tests.service import THERACHARGE, running_service

pytestmark = pytest.mark.slow
VISITS = 24  # enc-0001 … enc-0024, each its patient's billing day


@dataclass
class Layout:
    ehr: Ehr
    proxy: FaultProxy
    redis: RedisServer
    database: str
    instances: list[Stack]
    workers: dict[str, subprocess.Popen[bytes]]
    env: dict[str, str]
    folder: Path

    def start_worker(self, name: str) -> None:
        log = (self.folder / f"{name}.log").open("ab")
        self.workers[name] = subprocess.Popen(
            [THERACHARGE, "worker", "--concurrency", "2", "--name", f"{name}@layout"],
            env=self.env,
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def claims(self) -> list[tuple[int, str, str]]:
        """(id, status, claimed_by) of every notification, read from the shared database."""
        engine = create_engine(self.database)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    text("SELECT id, status, coalesce(claimed_by, '') FROM notifications")
                )
                return [(int(i), str(s), str(c)) for i, s, c in rows]
        finally:
            engine.dispose()


@contextmanager
def layout_running(folder: Path, key: ec.EllipticCurvePrivateKey) -> Iterator[Layout]:
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": KID, "alg": "ES384", "use": "sig"})
    (folder / "jwks.json").write_text(json.dumps({"keys": [public]}))
    ehr_port = free_port()
    proxy = FaultProxy(f"http://127.0.0.1:{ehr_port}", free_port())
    server = proxy.start()
    pg_folder = Path(tempfile.mkdtemp(prefix="theracharge-layout-pg-"))  # postgres can enter
    with ExitStack() as stack:
        stack.callback(server.shutdown)
        stack.callback(shutil.rmtree, pg_folder, True)
        database = stack.enter_context(running_postgres(pg_folder))
        redis = stack.enter_context(running_redis(folder / "redis"))
        ehr = stack.enter_context(
            running_ehr(folder / "ehr", port=ehr_port, advertised=f"{proxy.url}/fhir")
        )
        load_sample(ehr, visits=VISITS, seed=43, problem_rate=0.0)
        env = layout_env(database, redis.url, f"{proxy.url}/fhir", folder / "jwks.json")
        instances = []
        for name in ("web-1", "web-2"):
            service = stack.enter_context(running_service(folder / name, env, workers=2))

            def sign(url: str) -> str:
                now = int(time.time())
                claims = {"iss": ISSUER, "aud": url, "iat": now, "exp": now + 300}
                claims["jti"] = os.urandom(16).hex()
                return jwt.encode(claims, key, algorithm="ES384", headers={"kid": KID})

            instances.append(Stack(ehr, proxy, service, load_settings(env), sign))
        worker_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("THERACHARGE_")},
            **env,
            "THERACHARGE_INSTANCE_DIR": str(folder / "workers"),
        }
        layout = Layout(ehr, proxy, redis, database, instances, {}, worker_env, folder)
        for name in ("worker-1", "worker-2"):
            layout.start_worker(name)

        def stop_workers() -> None:
            for process in layout.workers.values():
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGTERM)
                    try:
                        process.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        os.killpg(process.pid, signal.SIGKILL)

        stack.callback(stop_workers)
        yield layout


def _until(condition: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not reached in {seconds} s: {what}")


def test_two_instances_two_workers_a_killed_worker_and_a_lost_broker(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    with layout_running(tmp_path, key) as layout:
        web1, web2 = layout.instances
        first = [f"enc-{n:04d}" for n in range(1, 13)]
        second = [f"enc-{n:04d}" for n in range(13, VISITS + 1)]

        # 1. Transactions slow (4 s each): worker-1 is caught holding a day, and SIGKILLed.
        layout.proxy.add("POST", r"^/fhir/?$", "slow", times=6, seconds=4)
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(lambda a: notify(*a), [(s, e) for e in first for s in (web1, web2)])
            )
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        # the same Encounter version from both instances is recorded once
        assert sum(a.json()["queued"] for a in answers) == len(first)
        pid = layout.workers["worker-1"].pid
        held = _until(
            lambda: [
                c
                for c in layout.claims()
                if c[1] == "processing" and c[2].split("@")[0].endswith(f":{pid}")
            ],
            60,
            "worker-1 processing a notification",
        )
        os.killpg(pid, signal.SIGKILL)
        layout.workers["worker-1"].wait(timeout=10)
        killed_id = held[0][0]

        # 2. Redis killed (nothing kept) while notifications and hooks arrive at both instances.
        layout.redis.stop()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(lambda a: notify(*a), [(s, e) for e in second for s in (web1, web2)])
            )
            hooks = list(
                pool.map(
                    lambda a: a[0].hook(a[1]), [(s, e) for e in first[:6] for s in (web1, web2)]
                )
            )
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        assert sum(a.json()["queued"] for a in answers) == len(second)
        assert all(h.status_code == 200 for h in hooks), [h.text for h in hooks]
        layout.redis.start()  # empty: the sweeper hands over what is recorded and not done
        layout.start_worker("worker-3")  # a replacement for the killed one

        # 3. Everything done once, the killed worker's notification taken over.
        done = wait_until_done(web1, VISITS, seconds=150)
        assert len(done) == VISITS
        assert notifications(web2, "failed") == []
        taken_over = next(n for n in done if n["id"] == killed_id)
        assert taken_over["attempts"] >= 2
        assert not taken_over["claimed_by"].split("@")[0].endswith(f":{pid}")
        for encounter in first + second:
            web1.converged(encounter)  # one ChargeItem per line, nothing left to change
        lines = web1.ours()
        assert len(lines) >= VISITS  # each visit has at least one line, none duplicated

        # 4. A backfill of the same dates, on the workers: every day unchanged.
        report = subprocess.run(
            [THERACHARGE, "backfill", "--since", "2026-11-01", "--until", "2026-11-30"],
            env=layout.env,
            cwd=layout.folder,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert report.returncode == 0, report.stderr + report.stdout
        assert f"{VISITS} billing day(s): written 0, unchanged {VISITS}, held" in report.stdout, (
            report.stdout
        )
        assert "failed 0" in report.stdout
        metrics = requests.get(f"{web2.service.url}/metrics", timeout=10).text
        assert 'theracharge_work{kind="backfill-day",status="done"} 24.0' in metrics
        assert 'theracharge_dead_letters{kind="notification"} 0.0' in metrics
