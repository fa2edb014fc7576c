"""An environment that does nothing, for timing the server's own round trip (``metatrain bench``)."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np


class Empty(gymnasium.Env[np.ndarray, int]):
    """Four zeros, two actions, no reward, episodes of 500 steps: every microsecond a step costs is the server's."""

    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self) -> None:
        self.zeros = np.zeros(4, dtype=np.float32)
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self.steps = 0
        return self.zeros, {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.steps += 1
        return self.zeros, 0.0, False, self.steps >= 500, {}


def make_empty(task: Any) -> gymnasium.Env[np.ndarray, int]:
    """The empty environment (no TimeLimit wrapper: it truncates itself; the server needs the limit, so it is set)."""
    env = Empty()
    env.spec = gymnasium.envs.registration.EnvSpec("MetatrainEmpty-v0", max_episode_steps=500)
    return env
