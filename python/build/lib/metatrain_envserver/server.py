"""The server's command loop: one environment at a time, driven over a pipe by a metatrain worker.

Modelled on gymnasium's ``AsyncVectorEnv`` worker: a loop over requests, every exception sent back to the
parent as (type, message, traceback) rather than ending the loop. The protocol's pipe is a private copy of the
standard streams taken at start; the environment's own prints go to standard error, so they cannot corrupt it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import threading
import time
import traceback
from typing import Any, Callable

import gymnasium
import numpy as np

from metatrain_envserver import protocol
from metatrain_envserver.tasks import Flattener, TaskError, TaskSpec, action_count, make_env


class Server:
    """The state between requests: the current environment and how its observations are flattened."""

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed
        self.env: gymnasium.Env[Any, Any] | None = None
        self.flatten: Callable[[Any], bytes] | None = None
        self.action_offset = 0
        self.actions = 0

    def handle(self, command: int, payload: bytes) -> bytes:
        """Carries out one request and returns the OK reply's payload; raises on any failure."""
        if command == protocol.STEP:
            (action,) = protocol.U32.unpack(payload)
            env, flatten = self._current()
            if action >= self.actions:
                raise TaskError(f"action {action} is outside the {self.actions} actions")
            observation, reward, terminated, truncated, _ = env.step(action + self.action_offset)
            flags = (protocol.TERMINATED if terminated else 0) | (protocol.TRUNCATED if truncated else 0)
            return protocol.STEP_HEAD.pack(float(reward), flags) + flatten(observation)
        if command == protocol.RESET:
            (seed,) = protocol.U64.unpack(payload)
            env, flatten = self._current()
            observation, _ = env.reset(seed=seed)
            return flatten(observation)
        if command == protocol.MAKE:
            return self._make(json.loads(payload.decode("utf-8")))
        if command == protocol.SET_STATE:
            return self._set_state(np.frombuffer(payload, dtype="<f8").copy())
        if command == protocol.IDENTITY:
            return json.dumps(identity(self.allowed), sort_keys=True).encode()
        if command == protocol.PING:
            return b""
        raise TaskError(f"unknown command {command}")

    def _current(self) -> tuple[gymnasium.Env[Any, Any], Callable[[Any], bytes]]:
        if self.env is None or self.flatten is None:
            raise TaskError("no environment: send MAKE first")
        return self.env, self.flatten

    def _make(self, document: Any) -> bytes:
        self.close()
        spec = TaskSpec.parse(document)
        env = make_env(spec, self.allowed)
        try:
            flatten = Flattener(env.observation_space)
            actions = action_count(env.action_space)
            steps = step_limit(env)
            if not steps:
                raise TaskError("the environment has no step limit: give the family max_episode_steps")
        except BaseException:
            env.close()
            raise
        self.env, self.flatten, self.actions = env, flatten, actions
        self.action_offset = int(getattr(env.action_space, "start", 0))
        return json.dumps({"observation_size": flatten.size, "action_count": actions, "max_episode_steps": steps,
                           "observation_space": str(env.observation_space),
                           "action_space": str(env.action_space)}).encode()

    def _set_state(self, state: np.ndarray) -> bytes:
        """Restarts the episode at ``state`` (``env.unwrapped.state``; classic-control environments keep it there)."""
        env, flatten = self._current()
        env.reset()
        unwrapped = env.unwrapped
        if not hasattr(unwrapped, "state"):
            raise TaskError(f"{type(unwrapped).__name__} keeps no 'state' attribute to set")
        unwrapped.state = state  # type: ignore[attr-defined]
        for getter in ("_get_obs", "_get_ob"):
            if hasattr(unwrapped, getter):
                return flatten(getattr(unwrapped, getter)())
        return flatten(np.asarray(state, dtype=np.float32))

    def close(self) -> None:
        if self.env is not None:
            env, self.env, self.flatten = self.env, None, None
            env.close()


def step_limit(env: gymnasium.Env[Any, Any]) -> int | None:
    """The episode step limit: the outermost TimeLimit wrapper's, else the spec's."""
    layer: Any = env
    while isinstance(layer, gymnasium.Wrapper):
        if isinstance(layer, gymnasium.wrappers.TimeLimit):
            return int(layer._max_episode_steps)
        layer = layer.env
    return env.spec.max_episode_steps if env.spec is not None else None


def identity(allowed: frozenset[str]) -> dict[str, Any]:
    """What this server computes with: the interpreter and the versions of gymnasium, numpy and allowed packages."""
    modules: dict[str, str] = {}
    for name in sorted(allowed):
        top = name.split(".")[0]
        try:
            modules[top] = importlib.metadata.version(top)
        except importlib.metadata.PackageNotFoundError:
            module = sys.modules.get(top)
            modules[top] = str(getattr(module, "__version__", "unversioned"))
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "gymnasium": gymnasium.__version__, "numpy": np.__version__, "modules": modules,
            "machine": platform.machine()}


def error_payload(error: BaseException) -> bytes:
    return json.dumps({"type": type(error).__name__, "message": str(error),
                       "traceback": "".join(traceback.format_exception(error))[-4000:]}).encode()


def serve(request_fd: int, reply_fd: int, allowed: frozenset[str]) -> int:
    """Answers requests until CLOSE or the end of the pipe; 0 on a clean end."""
    server = Server(allowed)
    frames = protocol.FrameReader(request_fd)
    try:
        while True:
            body = frames.next()
            if body is None or body[0] == protocol.CLOSE:
                if body is not None:
                    protocol.write_frame(reply_fd, protocol.OK)
                return 0
            try:
                reply = server.handle(body[0], body[1:])
            except Exception as error:  # every failure goes back to the worker, which decides
                protocol.write_frame(reply_fd, protocol.ERROR, error_payload(error))
            else:
                protocol.write_frame(reply_fd, protocol.OK, reply)
    finally:
        server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metatrain_envserver", description=__doc__)
    parser.add_argument("--allow-module", action="append", default=[], metavar="MODULE",
                        help="a module (or package) entry points and 'module:id' ids may import; repeatable")
    args = parser.parse_args(argv)
    # The protocol gets private copies of the pipe; fd 1 becomes stderr and fd 0 /dev/null for the environment.
    request_fd, reply_fd = os.dup(0), os.dup(1)
    sys.stdout.flush()
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    close_inherited({request_fd, reply_fd})
    die_with_parent()
    return serve(request_fd, reply_fd, frozenset(args.allow_module))


def close_inherited(keep: set[int]) -> None:
    """Closes every descriptor above 2 but ``keep``: whatever the worker's own parent handed it (a process monitor's
    socket, say) must not be held open by a server that outlives or hangs past the worker."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def die_with_parent() -> None:
    """Exits when the worker is gone (this process re-parented), so a server hung inside a step does not outlive it.

    A watchdog thread rather than PR_SET_PDEATHSIG, which fires when the *thread* that started the server ends, and
    a worker's pool outlives the thread that started a server.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
