"""A client for the server's protocol, as a worker speaks it, over a real subprocess's pipes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from metatrain_envserver import protocol

HERE = Path(__file__).parent


class Client:
    def __init__(self, *allow: str) -> None:
        args = [sys.executable, "-m", "metatrain_envserver"] + [f"--allow-module={m}" for m in allow]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent)])}
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.requests, self.replies = self.process.stdin, self.process.stdout

    def call(self, command: int, payload: bytes = b"") -> tuple[int, bytes]:
        self.requests.write(protocol.HEADER.pack(len(payload) + 1) + bytes((command,)) + payload)
        self.requests.flush()
        header = self.replies.read(4)
        assert len(header) == 4, "the server closed its pipe"
        body = self.replies.read(protocol.HEADER.unpack(header)[0])
        return body[0], body[1:]

    def ok(self, command: int, payload: bytes = b"") -> bytes:
        status, body = self.call(command, payload)
        assert status == protocol.OK, json.loads(body)
        return body

    def error(self, command: int, payload: bytes = b"") -> dict[str, str]:
        status, body = self.call(command, payload)
        assert status == protocol.ERROR, body
        return json.loads(body)

    def make(self, **task: Any) -> dict[str, Any]:
        return json.loads(self.ok(protocol.MAKE, json.dumps(task).encode()))

    def reset(self, seed: int) -> list[float]:
        body = self.ok(protocol.RESET, protocol.U64.pack(seed))
        return list(struct.unpack(f"<{len(body) // 4}f", body))

    def step(self, action: int) -> tuple[float, int, list[float]]:
        body = self.ok(protocol.STEP, protocol.U32.pack(action))
        reward, flags = protocol.STEP_HEAD.unpack_from(body)
        rest = body[protocol.STEP_HEAD.size:]
        return reward, flags, list(struct.unpack(f"<{len(rest) // 4}f", rest))

    def close(self) -> int:
        if self.process.poll() is None:
            try:
                self.call(protocol.CLOSE)
            except (AssertionError, BrokenPipeError):
                pass
        return self.process.wait(timeout=30)


@pytest.fixture
def client() -> Iterator[Client]:
    c = Client("faulty_envs")
    yield c
    try:
        c.close()
    except subprocess.TimeoutExpired:
        c.process.kill()
