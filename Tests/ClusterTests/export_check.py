"""Reads what `metatrain export` wrote with the Python libraries PyTorch users load it with.

  export_check.py MODEL.safetensors MODEL.onnx OBSERVATIONS.f32 INPUTS
prints {"safetensors": [...], "onnx": [...], "metadata": {...}, "onnx_metadata": {...}, "params_sha256": "..."}:
Q-values (row-major, float64) of every observation — from the safetensors tensors in numpy, the network rebuilt from
the file's own metadata alone (its "layers": names, weight layout, activations), and by onnxruntime from the ONNX
graph — and θ's SHA-256 recomputed by the file's "params_sha256_recipe" (W_i as inputs x outputs, then b_i).
"""
import hashlib
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
layers = json.loads(metadata["layers"])
activations = {"relu": lambda v: np.maximum(v, 0), "none": lambda v: v}
h = x.astype(np.float32)
flat = []
for layer in layers:
    w = tensors[layer["weight"]]
    w = w.T if layer["weight_layout"] == "outputs_by_inputs" else w   # to inputs x outputs
    h = activations[layer["activation"]](h @ w + tensors[layer["bias"]])
    flat += [np.ascontiguousarray(w, dtype="<f4").ravel(), tensors[layer["bias"]].astype("<f4").ravel()]
digest = hashlib.sha256(np.concatenate(flat).tobytes()).hexdigest()

session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
q = session.run(["q_values"], {"observation": x.astype(np.float32)})[0]

print(json.dumps({"safetensors": h.astype(np.float64).ravel().tolist(), "onnx": q.astype(np.float64).ravel().tolist(),
                  "metadata": metadata, "onnx_metadata": dict(session.get_modelmeta().custom_metadata_map),
                  "params_sha256": digest}))
