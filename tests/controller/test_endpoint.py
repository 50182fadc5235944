"""The running controller's status endpoint and port owner record (issue 9 item 5): what
`pumpctl pump status | dispensed | watch` read instead of opening a port a run has open."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from pumpctl.run.endpoint import (
    EndpointError,
    PortInUse,
    StatusEndpoint,
    follow,
    owner_of,
    port_key,
    snapshot,
)


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "rt"
    monkeypatch.setenv("PUMPCTL_RUNTIME_DIR", str(directory))
    return directory


def test_a_port_is_known_by_what_it_is_not_what_it_is_called(tmp_path: Path) -> None:
    device = tmp_path / "pts-7"
    device.touch()
    (tmp_path / "ne").symlink_to(device)
    assert port_key(str(tmp_path / "ne")) == port_key(f"newera://{device}?baud=9600")
    assert port_key("newera+tcp://LocalHost:4001") == port_key("newera+tcp://127.0.0.1:4001")


def test_the_endpoint_serves_the_run_read_only_and_owns_the_port(tmp_path: Path) -> None:
    port = tmp_path / "ne"
    port.touch()

    async def main() -> None:
        endpoint = await StatusEndpoint(str(port), run_id="RUN-A").start()
        try:
            owner = owner_of(str(port))
            assert owner is None  # this process owns it: not someone else's
            data = json.loads(endpoint.owner_path.read_text())
            assert data["pid"] == os.getpid() and data["run_id"] == "RUN-A"
            endpoint.emit({"type": "header", "plan": "p", "total_volume_ml": 35.0})
            endpoint.emit({"type": "state", "state": "started"})
            endpoint.emit({"type": "sample", "state": "infusing", "counter_ml": 1.5,
                           "rate_ml_h": 52.5, "withdrawn_ml": 0.0, "alarm": None})
            from pumpctl.run.endpoint import PortOwner

            me = PortOwner(os.getpid(), "RUN-A", str(port), endpoint.socket_path)
            snap = await snapshot(me)
            assert snap["run_id"] == "RUN-A" and snap["sample"]["counter_ml"] == 1.5
            assert snap["header"]["total_volume_ml"] == 35.0 and snap["state"] == "started"
            # A client that writes gets nothing done: the socket never reads commands.
            reader, writer = await asyncio.open_unix_connection(str(endpoint.socket_path))
            writer.write(b'{"op": "stop"}\nSTP\r')
            await writer.drain()
            first = json.loads(await reader.readline())
            assert first["type"] == "snapshot"
            endpoint.emit({"type": "sample", "state": "infusing", "counter_ml": 1.6})
            assert json.loads(await reader.readline())["counter_ml"] == 1.6
            writer.close()
            # Followers get every record until the run ends.
            records = follow(me)
            assert (await anext(records))["type"] == "snapshot"
            endpoint.emit({"type": "summary", "outcome": "aborted"})
            assert (await anext(records))["outcome"] == "aborted"
            await records.aclose()
        finally:
            await endpoint.aclose()
        assert not endpoint.owner_path.exists() and not endpoint.socket_path.exists()

    asyncio.run(main())


@pytest.mark.parametrize(("first_url", "second_url"), [
    ("ne", "ne"),
    # one pump over TCP named two ways (and by two protocols' URLs): still one owner
    ("newera+tcp://127.0.0.1:4001", "modbus+rtu+tcp://localhost:4001?map=vindum-vp"),
])
def test_a_second_run_on_an_owned_port_is_refused(tmp_path: Path, first_url: str,
                                                  second_url: str) -> None:
    """The owner record names a live process that is not this one (the test's parent, which
    outlives it): a run started here on that port is refused, naming it."""
    (tmp_path / "ne").touch()
    first_port = str(tmp_path / first_url) if first_url == "ne" else first_url
    second_port = str(tmp_path / second_url) if second_url == "ne" else second_url

    async def main() -> None:
        first = await StatusEndpoint(first_port, run_id="RUN-A").start()
        try:
            data = json.loads(first.owner_path.read_text())
            first.owner_path.write_text(json.dumps({**data, "pid": os.getppid()}))
            owner = owner_of(second_port)
            assert owner is not None and owner.pid == os.getppid()
            with pytest.raises(PortInUse, match=rf"in use by pumpctl run RUN-A \(pid "
                                                rf"{os.getppid()}\)"):
                await StatusEndpoint(second_port, run_id="RUN-B").start()
        finally:
            await first.aclose()

    asyncio.run(main())


def test_an_owner_that_died_owns_nothing(tmp_path: Path, runtime_dir: Path) -> None:
    port = tmp_path / "ne"
    port.touch()

    async def main() -> None:
        endpoint = await StatusEndpoint(str(port), run_id="RUN-A").start()
        data = json.loads(endpoint.owner_path.read_text())
        endpoint.owner_path.write_text(json.dumps({**data, "pid": 2**22 + 1}))
        assert owner_of(str(port)) is None
        again = await StatusEndpoint(str(port), run_id="RUN-B").start()  # takes over
        await endpoint.aclose()  # the stale one leaving does not take the new one's files
        assert json.loads(again.owner_path.read_text())["run_id"] == "RUN-B"
        await again.aclose()
        assert not again.owner_path.exists()

    asyncio.run(main())


def test_a_record_whose_pid_was_reused_owns_nothing(tmp_path: Path) -> None:
    """A run killed with SIGKILL leaves its record; its pid may come back as an unrelated
    process. Nobody answering on the socket is what tells."""
    port = tmp_path / "ne"
    port.touch()

    async def main() -> None:
        endpoint = await StatusEndpoint(str(port), run_id="RUN-A").start()
        data = json.loads(endpoint.owner_path.read_text())
        endpoint.owner_path.write_text(json.dumps({**data, "pid": os.getppid()}))
        assert owner_of(str(port)) is not None
        assert endpoint._server is not None
        endpoint._server.close()  # the run is gone; the files and a live pid remain
        await endpoint._server.wait_closed()
        assert owner_of(str(port)) is None

    asyncio.run(main())


def test_a_runtime_directory_others_can_write_is_not_trusted(tmp_path: Path,
                                                             runtime_dir: Path) -> None:
    port = tmp_path / "ne"
    port.touch()
    runtime_dir.mkdir(mode=0o700)
    runtime_dir.chmod(0o777)

    async def main() -> None:
        with pytest.raises(EndpointError, match="not private"):
            await StatusEndpoint(str(port), run_id="RUN-A").start()

    asyncio.run(main())
    assert owner_of(str(port)) is None
