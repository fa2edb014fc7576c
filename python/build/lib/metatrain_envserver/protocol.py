"""The wire format between a metatrain worker and this server: length-prefixed frames over a pipe.

Every frame is a little-endian ``u32`` body length followed by the body. A request's body starts with one
command byte; a reply's with one status byte (``OK`` or ``ERROR``). All integers and floats are little-endian.

=========  ==========================================  =====================================================
command    request payload                             OK reply payload
=========  ==========================================  =====================================================
MAKE       UTF-8 JSON task (see ``tasks.TaskSpec``)    UTF-8 JSON: observation_size, action_count,
                                                       max_episode_steps, observation_space, action_space
RESET      ``u64`` seed                                observation: ``f32`` × observation_size
STEP       ``u32`` action                              ``f64`` reward, ``u8`` flags (1 terminated,
                                                       2 truncated), observation
SET_STATE  ``f64`` × k: ``env.unwrapped.state``        observation (the episode restarts at that state)
IDENTITY   (none)                                      UTF-8 JSON: python, gymnasium, numpy, modules
PING       (none)                                      (none)
CLOSE      (none)                                      (none); the server exits
=========  ==========================================  =====================================================

An ERROR reply's payload is UTF-8 JSON ``{"type", "message", "traceback"}``: the exception the request raised.
The server keeps serving after an error; the worker decides whether the environment is still usable.
"""

from __future__ import annotations

import os
import struct

MAKE = 1
RESET = 2
STEP = 3
SET_STATE = 4
IDENTITY = 5
PING = 6
CLOSE = 7

OK = 0
ERROR = 1

TERMINATED = 1
TRUNCATED = 2

#: The largest frame either side accepts (a MAKE's JSON, an observation): 64 MiB.
MAX_FRAME_BYTES = 64 << 20

HEADER = struct.Struct("<I")
FRAME_HEAD = struct.Struct("<IB")
U64 = struct.Struct("<Q")
U32 = struct.Struct("<I")
STEP_HEAD = struct.Struct("<dB")


class ProtocolError(Exception):
    """The peer sent something this protocol does not allow (a frame too large, a truncated frame)."""


def read_exact(fd: int, count: int) -> bytes | None:
    """Reads exactly ``count`` bytes from ``fd``; None at end of file before the first byte."""
    chunks: list[bytes] = []
    remaining = count
    while remaining:
        chunk = os.read(fd, remaining)
        if not chunk:
            if remaining == count:
                return None
            raise ProtocolError(f"pipe closed {count - remaining} bytes into a {count}-byte read")
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class FrameReader:
    """Reads frames from ``fd``, a whole small frame (a step's request is 9 bytes) in one system call rather than
    a header's and a body's: a round trip is a few microseconds, and a system call is a good part of them."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    def next(self) -> bytes | None:
        """The next frame's body, or None when the peer closed the pipe between frames."""
        data = self.pending
        if not data:  # the usual case: one whole request per read
            data = os.read(self.fd, 65536)
            if not data:
                return None
        while len(data) < HEADER.size:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                if data:
                    raise ProtocolError(f"pipe closed {len(data)} bytes into a frame header")
                return None
            data += chunk
        (length,) = HEADER.unpack_from(data)
        if length == 0 or length > MAX_FRAME_BYTES:
            raise ProtocolError(f"frame of {length} bytes (1 to {MAX_FRAME_BYTES} allowed)")
        end = HEADER.size + length
        if len(data) < end:
            rest = read_exact(self.fd, end - len(data))
            if rest is None:
                raise ProtocolError("pipe closed inside a frame")
            data += rest
        self.pending = data[end:]
        return data[HEADER.size:end]


def write_frame(fd: int, status: int, payload: bytes = b"") -> None:
    """Writes one frame: the status (or command) byte and its payload, in one write where the pipe allows."""
    data = FRAME_HEAD.pack(len(payload) + 1, status) + payload
    written = os.write(fd, data)
    if written < len(data):
        view = memoryview(data)[written:]
        while view:
            view = view[os.write(fd, view):]
