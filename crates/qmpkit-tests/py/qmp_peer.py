"""Python's reference client, qemu.qmp, against a server built with qmpkit.

Run by crates/qmpkit-tests/tests/server_python.rs with the path of the server's unix socket.
Every step asserts; the script prints one line per step and exits non-zero on the first
failure.
"""

import asyncio
import os
import sys

from qemu.qmp import EventListener, ExecuteError, QMPClient


async def main(path: str) -> None:
    qmp = QMPClient("qmpkit-peer")
    await qmp.connect(path)
    greeting = qmp.greeting
    assert greeting is not None
    raw = greeting._asdict()
    version = raw["QMP"]["version"]["qemu"]
    assert (version["major"], version["minor"], version["micro"]) == (10, 0, 2), version
    assert "oob" in raw["QMP"]["capabilities"], raw
    print("connected and negotiated", flush=True)

    status = await qmp.execute("query-status")
    assert status == {"status": "running", "running": True}, status
    print("query-status:", status, flush=True)

    listener = EventListener()
    with qmp.listen(listener):
        ret = await qmp.execute("stop")
        assert ret == {}, ret
        event = await asyncio.wait_for(listener.get(), 10)
    assert event["event"] == "STOP", event
    assert set(event["timestamp"]) == {"seconds", "microseconds"}, event
    print("event:", event["event"], flush=True)

    yank = await qmp.execute("query-yank", oob=True)
    assert yank == [{"type": "chardev", "id": "compat_monitor0"}], yank
    print("exec-oob query-yank:", yank, flush=True)

    try:
        await qmp.execute("human-monitor-command", {"command-line": 42})
        raise AssertionError("a wrong argument type was accepted")
    except ExecuteError as err:
        assert err.error_class == "GenericError", err.error_class
        desc = err.error.error.desc
        assert desc == "Invalid parameter type for 'command-line', expected: string", desc
    print("validation error:", desc, flush=True)

    read_end, write_end = os.pipe()
    qmp.send_fd_scm(write_end)
    os.close(write_end)
    assert await qmp.execute("getfd", {"fdname": "pyfd"}) == {}
    assert await qmp.execute("x-write-fd", {"fdname": "pyfd", "text": "hello from qmpkit"}) == {}
    assert await qmp.execute("closefd", {"fdname": "pyfd"}) == {}
    received = os.read(read_end, 100)
    os.close(read_end)
    assert received == b"hello from qmpkit", received
    print("send_fd_scm + getfd:", received.decode(), flush=True)

    await qmp.disconnect()
    print("disconnected", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
