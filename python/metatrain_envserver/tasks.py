"""Builds a task's environment from the JSON a worker sends, and flattens its spaces to what DQN takes.

The JSON names either a registered gymnasium id (``id``, with ``kwargs`` for ``gymnasium.make`` and
``attributes`` set on ``env.unwrapped`` after it) or a user's entry point (``entry_point: "package.module:function"``,
called with a :class:`Task`). Only modules the server was started to allow are imported, so whoever sends a task
cannot make the server run code it was not meant to.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import gymnasium
import numpy as np

Value = Union[bool, int, float, str]


class TaskError(Exception):
    """A task the server refuses: an unknown key, a module not allowed, a space DQN cannot use."""


@dataclass(frozen=True)
class Task:
    """What an entry point receives: the task's seed and the parameters drawn for it from the family's ``vary``."""

    seed: int
    parameters: dict[str, Value] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """One task as the worker describes it (the MAKE request's JSON)."""

    env_id: str | None
    entry_point: str | None
    kwargs: dict[str, Value]
    attributes: dict[str, Value]
    seed: int
    max_episode_steps: int | None

    KEYS = frozenset({"id", "entry_point", "kwargs", "attributes", "seed", "max_episode_steps"})

    @staticmethod
    def parse(document: Any) -> "TaskSpec":
        """Checks the MAKE request's JSON object and returns the task it describes."""
        if not isinstance(document, dict):
            raise TaskError("a task must be a JSON object")
        unknown = set(document) - TaskSpec.KEYS
        if unknown:
            raise TaskError(f"unknown task keys {sorted(unknown)}; known: {sorted(TaskSpec.KEYS)}")
        env_id, entry_point = document.get("id"), document.get("entry_point")
        if (env_id is None) == (entry_point is None):
            raise TaskError("a task names exactly one of 'id' and 'entry_point'")
        for name, text in (("id", env_id), ("entry_point", entry_point)):
            if text is not None and (not isinstance(text, str) or not text):
                raise TaskError(f"'{name}' must be a non-empty string")
        seed = document.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
            raise TaskError("'seed' must be an integer in [0, 2^64)")
        steps = document.get("max_episode_steps")
        if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0):
            raise TaskError("'max_episode_steps' must be a positive integer")
        return TaskSpec(env_id, entry_point, _values(document.get("kwargs", {}), "kwargs"),
                        _values(document.get("attributes", {}), "attributes"), seed, steps)


def _values(mapping: Any, name: str) -> dict[str, Value]:
    """A JSON object of plain values (bool, int, float, str), checked."""
    if not isinstance(mapping, dict):
        raise TaskError(f"'{name}' must be a JSON object")
    for key, value in mapping.items():
        if not isinstance(value, (bool, int, float, str)):
            raise TaskError(f"{name}.{key} must be a number, a string or a boolean, not {type(value).__name__}")
        if isinstance(value, float) and not math.isfinite(value):
            raise TaskError(f"{name}.{key} must be finite")
    return dict(mapping)


def module_allowed(module: str, allowed: frozenset[str]) -> bool:
    """Whether ``module`` is one of ``allowed`` or inside one of them (``a.b`` is inside ``a``)."""
    parts = module.split(".")
    return any(".".join(parts[:n]) in allowed for n in range(1, len(parts) + 1))


def _import_allowed(module: str, allowed: frozenset[str], what: str) -> Any:
    if not module or not module_allowed(module, allowed):
        shown = ", ".join(sorted(allowed)) or "none"
        raise TaskError(f"{what} needs module '{module}', which this worker was not started to allow "
                        f"(allowed: {shown}; start the worker with --allow-module {module.split('.')[0]})")
    return importlib.import_module(module)


def make_env(spec: TaskSpec, allowed: frozenset[str]) -> gymnasium.Env:
    """The task's environment, with ``attributes`` set on ``env.unwrapped``."""
    if spec.entry_point is not None:
        module, _, function = spec.entry_point.partition(":")
        if not function:
            raise TaskError(f"entry_point '{spec.entry_point}' must be 'package.module:function'")
        factory: Callable[[Task], Any] = getattr(_import_allowed(module, allowed, f"entry_point '{spec.entry_point}'"),
                                                 function, None)
        if not callable(factory):
            raise TaskError(f"entry_point '{spec.entry_point}': '{module}' has no function '{function}'")
        env = factory(Task(seed=spec.seed, parameters={**spec.kwargs, **spec.attributes}))
        if not isinstance(env, gymnasium.Env):
            raise TaskError(f"entry_point '{spec.entry_point}' returned {type(env).__name__}, not a gymnasium.Env")
        if spec.max_episode_steps is not None:
            env = gymnasium.wrappers.TimeLimit(env, spec.max_episode_steps)
        return env
    assert spec.env_id is not None
    if ":" in spec.env_id:  # gymnasium.make imports the module named before the colon
        _import_allowed(spec.env_id.split(":", 1)[0], allowed, f"id '{spec.env_id}'")
    extra = {} if spec.max_episode_steps is None else {"max_episode_steps": spec.max_episode_steps}
    env = gymnasium.make(spec.env_id, **spec.kwargs, **extra)
    for name, value in spec.attributes.items():
        if not name.isidentifier() or name.startswith("_"):
            raise TaskError(f"attribute '{name}' cannot be set: only public attribute names (no leading underscore)")
        if not hasattr(env.unwrapped, name):
            raise TaskError(f"{spec.env_id} has no attribute '{name}' on env.unwrapped to set")
        setattr(env.unwrapped, name, value)
    return env


class Flattener:
    """Turns a space's observations into flat float32 vectors: Box flattened, Discrete one-hot."""

    def __init__(self, space: gymnasium.Space[Any]) -> None:
        if isinstance(space, gymnasium.spaces.Box):
            self.size = int(np.prod(space.shape)) if space.shape else 1
            self.shape = space.shape
            self.discrete: gymnasium.spaces.Discrete | None = None
        elif isinstance(space, gymnasium.spaces.Discrete):
            self.size = int(space.n)
            self.discrete = space
        else:
            raise TaskError(f"observation space {space} is not supported: metatrain takes Box (flattened) or Discrete "
                            f"(one-hot); wrap the environment in gymnasium.wrappers.FlattenObservation")
        if self.size <= 0:
            raise TaskError(f"observation space {space} has no elements")

    def __call__(self, observation: Any) -> bytes:
        if self.discrete is not None:
            index = int(observation) - int(self.discrete.start)
            if not 0 <= index < self.size:
                raise TaskError(f"observation {observation} is outside {self.discrete}")
            vector = np.zeros(self.size, dtype=np.float32)
            vector[index] = 1
            return vector.tobytes()
        array = np.asarray(observation, dtype=np.float32)
        if array.size != self.size:
            raise TaskError(f"observation has shape {array.shape}, but the observation space's shape is {self.shape}")
        return array.tobytes()


def action_count(space: gymnasium.Space[Any]) -> int:
    """How many discrete actions ``space`` has; other spaces are refused with the wrapper that would fit."""
    if isinstance(space, gymnasium.spaces.Discrete):
        return int(space.n)
    hint = ("gymnasium.wrappers.DiscretizeAction (or the environment's own discrete variant, e.g. LunarLander's "
            "continuous=False)") if isinstance(space, gymnasium.spaces.Box) else "a wrapper that maps to Discrete"
    raise TaskError(f"action space {space} is not supported: metatrain's DQN takes Discrete actions; use {hint}")
