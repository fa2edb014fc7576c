"""Reads a run's TensorBoard event files with tensorboard's own EventAccumulator.

  tensorboard_check.py RUN_DIR/tensorboard
prints {"TAG": [[step, value], ...], ...} for every scalar tag.
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

accumulator = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
accumulator.Reload()
print(json.dumps({tag: [[e.step, e.value] for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}))
