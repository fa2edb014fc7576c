"""Reads what `metatrain export` wrote with the Python libraries PyTorch users load it with.

  export_check.py MODEL.safetensors MODEL.onnx OBSERVATIONS.f32 INPUTS
prints {"safetensors": [...], "onnx": [...], "metadata": {...}}: Q-values (row-major, float64) of every
observation, computed from the safetensors tensors in numpy (PyTorch's Linear: x @ W.T + b, ReLU between) and by
onnxruntime from the ONNX graph.
"""
import json
import sys

import numpy as np
import onnxruntime
from safetensors import safe_open
from safetensors.numpy import load_file

st_path, onnx_path, obs_path, inputs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
x = np.fromfile(obs_path, dtype="<f4").reshape(-1, inputs)

tensors = load_file(st_path)
with safe_open(st_path, framework="numpy") as f:
    metadata = f.metadata()
layers = sorted({int(name.split(".")[0]) for name in tensors})
h = x.astype(np.float32)
for i, index in enumerate(layers):
    h = h @ tensors[f"{index}.weight"].T + tensors[f"{index}.bias"]
    if i < len(layers) - 1:
        h = np.maximum(h, 0)

session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
q = session.run(["q_values"], {"observation": x.astype(np.float32)})[0]

print(json.dumps({"safetensors": h.astype(np.float64).ravel().tolist(), "onnx": q.astype(np.float64).ravel().tolist(),
                  "metadata": metadata}))
