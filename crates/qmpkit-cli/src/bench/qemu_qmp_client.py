"""The Python side of `qmp bench client`: qemu.qmp doing the same work as qmpkit.

Run by `qmp bench client` from the venv that scripts/test makes. It connects to the QMP socket
given on the command line, runs one workload, and prints one JSON object: the wall time and the
process CPU time (time.process_time, user + system) spent in the measured loop only.
"""

import asyncio
import json
import sys
import time

from qemu.qmp import QMPClient


async def main(socket_path, workload, count):
    qmp = QMPClient("bench")
    await qmp.connect(socket_path)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if workload == "seq":
        for _ in range(count):
            await qmp.execute("query-status")
    elif workload == "concurrent":
        async def worker(n):
            for _ in range(n):
                await qmp.execute("query-status")
        await asyncio.gather(*(worker(count // 8) for _ in range(8)))
        count = (count // 8) * 8
    elif workload == "schema":
        for _ in range(count):
            await qmp.execute("query-qmp-schema")
    else:
        raise SystemExit(f"unknown workload {workload}")
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    await qmp.disconnect()
    print(json.dumps({"ops": count, "wall": wall, "cpu": cpu}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
