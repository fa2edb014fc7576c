"""Entry points for tests: environments that fail in each way a user's environment can.

Each takes a ``metatrain_envserver.Task``; ``parameters["at_step"]`` says on which step (counted over all the
environment's episodes) the fault comes, so a test can let a few episodes pass first. Used by the pytest suite and by the Swift
tests that run real servers (``Tests/EnvironmentServerTests``).
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

import gymnasium
import numpy as np

class Faulty(gymnasium.Env[np.ndarray, int]):
    """A one-dimensional walk whose step ``at_step`` misbehaves as ``fault`` says."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, fault: str, at_step: int, once: str = "") -> None:
        self.fault, self.at_step, self.position, self.steps = fault, at_step, 0.0, 0
        self.once = once

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.position = float(self.np_random.uniform(-1, 1))
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return np.array([self.position, 1.0, -1.0], dtype=np.float32)

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.steps += 1
        _steps = self.steps
        self.position += 0.1 if action == 1 else -0.1
        reward = -abs(self.position)
        if (_steps == self.at_step or (self.fault.endswith("-always") and _steps >= self.at_step)) and self._first_time():
            kind = self.fault.removesuffix("-always")
            if kind == "raise":
                raise RuntimeError(f"the simulator broke at step {_steps}")
            if kind == "exit":
                os._exit(9)
            if kind == "segfault":
                ctypes.string_at(0)  # a C extension's crash: SIGSEGV in this process
            if kind == "hang":
                time.sleep(3600)
            if kind == "nan":
                return np.array([np.nan, 1.0, -1.0], dtype=np.float32), reward, False, False, {}
            if kind == "inf-reward":
                return self._obs(), float("inf"), False, False, {}
            if kind == "shape":
                return np.zeros(5, dtype=np.float32), reward, False, False, {}
            if kind == "print":
                print("a chatty environment writes to standard output", flush=True)
        return self._obs(), reward, abs(self.position) > 1.5, False, {}


    def _first_time(self) -> bool:
        """With ``once`` (a file path), only the first environment of all processes to get here faults."""
        if not self.once:
            return True
        try:
            os.close(os.open(self.once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return False
        return True


def make(task: Any) -> gymnasium.Env[np.ndarray, int]:
    """The faulty walk: ``parameters`` give ``fault`` (raise, exit, segfault, hang, nan, inf-reward, shape, print) and
    ``at_step``; a fault with the suffix '-always' comes on every step from then on; with ``once`` (a file that must
    not exist yet) only the first environment to reach its step faults, so a retried task succeeds."""
    env = Faulty(str(task.parameters.get("fault", "none")), int(task.parameters.get("at_step", 0)),
                 str(task.parameters.get("once", "")))
    return gymnasium.wrappers.TimeLimit(env, 50)


def dict_observations(task: Any) -> gymnasium.Env[Any, int]:
    """An environment with a Dict observation space, which the server must refuse with a hint."""
    env = gymnasium.make("CartPole-v1")
    return gymnasium.wrappers.TransformObservation(
        env, lambda o: {"o": o}, gymnasium.spaces.Dict({"o": env.observation_space}))
