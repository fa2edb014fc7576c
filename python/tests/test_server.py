"""The server against gymnasium itself, and every refusal and fault a worker must be told about."""

from __future__ import annotations

import json
import struct

import gymnasium
import numpy as np
import pytest

from conftest import Client
from metatrain_envserver import protocol
from metatrain_envserver.tasks import module_allowed


def test_cartpole_matches_gymnasium_step_for_step(client: Client) -> None:
    info = client.make(id="CartPole-v1", attributes={"gravity": 12.0, "length": 0.7})
    assert info["observation_size"] == 4 and info["action_count"] == 2 and info["max_episode_steps"] == 500
    env = gymnasium.make("CartPole-v1")
    env.unwrapped.gravity, env.unwrapped.length = 12.0, 0.7  # type: ignore[attr-defined]
    expected, _ = env.reset(seed=7)
    assert client.reset(7) == list(expected.astype(np.float32))
    rng = np.random.default_rng(3)
    for _ in range(200):
        action = int(rng.integers(2))
        observation, reward, terminated, truncated, _ = env.step(action)
        got_reward, flags, got = client.step(action)
        assert got == list(observation) and got_reward == reward
        assert flags == (1 if terminated else 0) | (2 if truncated else 0)
        if terminated or truncated:
            expected, _ = env.reset(seed=8)
            assert client.reset(8) == list(expected)


def test_kwargs_reach_make_and_discrete_observations_are_one_hot(client: Client) -> None:
    info = client.make(id="FrozenLake-v1", kwargs={"is_slippery": False, "map_name": "4x4"})
    assert info["observation_size"] == 16 and info["action_count"] == 4
    assert client.reset(0) == [1.0] + [0.0] * 15
    _, _, observation = client.step(2)  # right: cell 1
    assert observation.index(1.0) == 1 and sum(observation) == 1


def test_errors_come_back_and_the_server_keeps_serving(client: Client) -> None:
    assert client.error(protocol.STEP, protocol.U32.pack(0))["message"].startswith("no environment")
    unknown = client.error(protocol.MAKE, json.dumps({"id": "CartPole-v1", "gravity": 3}).encode())
    assert unknown["type"] == "TaskError" and "gravity" in unknown["message"]
    missing = client.error(protocol.MAKE, json.dumps({"id": "NoSuchEnv-v9"}).encode())
    assert "NoSuchEnv" in missing["message"]
    client.make(id="CartPole-v1")
    assert len(client.reset(1)) == 4
    assert "outside" in client.error(protocol.STEP, protocol.U32.pack(2))["message"]


def test_only_allowed_modules_are_imported(client: Client) -> None:
    refused = client.error(protocol.MAKE, json.dumps({"entry_point": "os:system"}).encode())
    assert "not started to allow" in refused["message"] and "--allow-module os" in refused["message"]
    colon = client.error(protocol.MAKE, json.dumps({"id": "subprocess:Anything-v0"}).encode())
    assert "subprocess" in colon["message"] and "not started to allow" in colon["message"]
    assert module_allowed("faulty_envs", frozenset({"faulty_envs"}))
    assert module_allowed("a.b.c", frozenset({"a"})) and not module_allowed("ab", frozenset({"a"}))


def test_only_public_attributes_can_be_set(client: Client) -> None:
    for name in ("__class__", "_np_random", "not an identifier"):
        error = client.error(protocol.MAKE, json.dumps({"id": "CartPole-v1", "attributes": {name: 1}}).encode())
        assert "only public attribute names" in error["message"], error
    missing = client.error(protocol.MAKE, json.dumps({"id": "CartPole-v1", "attributes": {"no_such": 1}}).encode())
    assert "no attribute 'no_such'" in missing["message"]


def test_unsupported_spaces_are_refused_with_the_wrapper_that_fits(client: Client) -> None:
    pendulum = client.error(protocol.MAKE, json.dumps({"id": "Pendulum-v1"}).encode())
    assert "Discrete actions" in pendulum["message"] and "DiscretizeAction" in pendulum["message"]
    nested = client.error(protocol.MAKE, json.dumps({"entry_point": "faulty_envs:dict_observations"}).encode())
    assert "FlattenObservation" in nested["message"]


def test_an_exception_in_step_names_its_type_and_message(client: Client) -> None:
    client.make(entry_point="faulty_envs:make", kwargs={"fault": "raise", "at_step": 3})
    client.reset(1)
    client.step(0), client.step(1)
    error = client.error(protocol.STEP, protocol.U32.pack(0))
    assert error["type"] == "RuntimeError" and "broke at step 3" in error["message"]
    assert "faulty_envs.py" in error["traceback"]
    client.step(1)  # the loop goes on


def test_prints_cannot_corrupt_the_pipe(client: Client) -> None:
    client.make(entry_point="faulty_envs:make", kwargs={"fault": "print", "at_step": 1})
    client.reset(1)
    reward, _, observation = client.step(1)
    assert len(observation) == 3 and reward <= 0


def test_wrong_shapes_are_reported(client: Client) -> None:
    client.make(entry_point="faulty_envs:make", kwargs={"fault": "shape", "at_step": 1})
    client.reset(1)
    assert "shape (5,)" in client.error(protocol.STEP, protocol.U32.pack(0))["message"]


def test_set_state_restarts_cartpole_where_told(client: Client) -> None:
    client.make(id="CartPole-v1")
    state = [0.01, -0.02, 0.03, 0.04]
    body = client.ok(protocol.SET_STATE, struct.pack("<4d", *state))
    assert list(struct.unpack("<4f", body)) == list(np.array(state, dtype=np.float32))


def test_identity_names_versions(client: Client) -> None:
    identity = json.loads(client.ok(protocol.IDENTITY))
    assert identity["gymnasium"] == gymnasium.__version__ and identity["numpy"] == np.__version__
    assert "faulty_envs" in identity["modules"]


def test_a_frame_too_large_ends_the_server() -> None:
    c = Client()
    assert c.process.stdin is not None
    c.process.stdin.write(protocol.HEADER.pack(protocol.MAX_FRAME_BYTES + 1))
    c.process.stdin.close()
    assert c.process.wait(timeout=30) != 0


def test_close_ends_the_server_cleanly() -> None:
    c = Client()
    assert c.close() == 0
