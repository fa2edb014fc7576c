"""A MiniGrid task family for metatrain: an empty room whose goal cell is hidden and moves from task to task.

Entry point ``minigrid_goals:make``. Each task's ``parameters`` give the goal's cell (``goal_x``, ``goal_y``,
drawn by the family's ``vary``) and optionally the room's ``size``. The agent sees only where it is and which way
it faces (its cell scaled to [0, 1] and its direction one-hot), not the goal: it must find the goal by acting and
remember it in its weights, which is what meta-learning can speed up (the goal-navigation family of MAML's paper,
on MiniGrid's grid and actions). Reaching the goal ends the episode with MiniGrid's reward, 1 − 0.9 × steps/max.

Needs ``minigrid`` (``pip install minigrid``); metatrain's workers must be started with
``--allow-module minigrid_goals`` and this folder on ``--python-path``.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Goal
from minigrid.minigrid_env import MiniGridEnv


class HiddenGoalRoom(MiniGridEnv):
    """An empty ``size`` × ``size`` room (walls included); the agent starts in the top-left cell facing right."""

    def __init__(self, goal: tuple[int, int], size: int = 8, max_steps: int | None = None) -> None:
        self.goal = goal
        super().__init__(mission_space=MissionSpace(mission_func=lambda: "get to the hidden goal"), grid_size=size,
                         max_steps=max_steps or 4 * size * size, see_through_walls=True)

    def _gen_grid(self, width: int, height: int) -> None:
        self.grid = Grid(width, height)
        self.grid.wall_rect(0, 0, width, height)
        self.put_obj(Goal(), *self.goal)
        self.agent_pos = (1, 1)
        self.agent_dir = 0
        self.mission = "get to the hidden goal"


class PositionObservation(gymnasium.ObservationWrapper[np.ndarray, int, Any]):
    """The agent's cell scaled to [0, 1] and its direction one-hot: six numbers, the goal not among them."""

    def __init__(self, env: HiddenGoalRoom) -> None:
        super().__init__(env)
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (6,), np.float32)
        self.scale = float(env.unwrapped.width - 1)

    def observation(self, observation: Any) -> np.ndarray:
        room = self.env.unwrapped
        x, y = room.agent_pos
        vector = np.zeros(6, dtype=np.float32)
        vector[0], vector[1] = x / self.scale, y / self.scale
        vector[2 + room.agent_dir] = 1.0
        return vector


class ThreeActions(gymnasium.ActionWrapper[np.ndarray, int, int]):
    """MiniGrid's left, right and forward only (pick-up, drop, toggle and done do nothing in an empty room)."""

    def __init__(self, env: gymnasium.Env[np.ndarray, int]) -> None:
        super().__init__(env)
        self.action_space = gymnasium.spaces.Discrete(3)

    def action(self, action: int) -> int:
        return int(action)


def make(task: Any) -> gymnasium.Env[np.ndarray, int]:
    """The task's room: its goal at (goal_x, goal_y), moved off the start cell if drawn there."""
    size = int(task.parameters.get("size", 8))
    inner = size - 2
    goal_x = min(max(int(task.parameters.get("goal_x", inner)), 1), inner)
    goal_y = min(max(int(task.parameters.get("goal_y", inner)), 1), inner)
    if (goal_x, goal_y) == (1, 1):
        goal_x, goal_y = inner, inner
    room = HiddenGoalRoom((goal_x, goal_y), size=size)
    # MiniGridEnv ends episodes itself at max_steps (truncated); TimeLimit tells metatrain the limit.
    return gymnasium.wrappers.TimeLimit(ThreeActions(PositionObservation(room)), room.max_steps)
