"""A TCP proxy for the tests: ``python tests/tcp_proxy.py PORT TARGET_PORT``.

It forwards 127.0.0.1:PORT (0: any free port) to 127.0.0.1:TARGET_PORT and prints
``listening on PORT`` once ready. Killing it is an outage of the target as its clients see
it (connections refused), while the target keeps its state; starting it again on the same
port ends the outage.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port: int, target_port: int) -> None:
    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))

    server = await asyncio.start_server(forward, "127.0.0.1", port, reuse_address=True)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
