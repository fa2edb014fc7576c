"""Second protobuf implementation for the wire interoperability test (Python's `protobuf` package).

  interop.py GEN_DIR read FILE    decode an Envelope written by metatrain, print its fields as JSON
  interop.py GEN_DIR write FILE VERSION   encode a Result Envelope (protocol VERSION) for metatrain to decode
GEN_DIR holds metatrain_pb2.py made by `protoc --python_out` from proto/metatrain.proto.
"""
import json
import struct
import sys

sys.path.insert(0, sys.argv[1])
import metatrain_pb2 as pb  # noqa: E402

mode, path = sys.argv[2], sys.argv[3]
if mode == "read":
    env = pb.Envelope()
    env.ParseFromString(open(path, "rb").read())
    a = env.assignment
    data = a.parameters.data
    print(json.dumps({
        "body": env.WhichOneof("body"), "version": env.protocol_version, "run_id": a.run_id,
        "iteration": a.iteration, "slot": a.slot, "attempt": a.attempt, "seed": a.seed,
        "algorithm": pb.Algorithm.Name(a.algorithm), "gravity": a.task.cartpole.gravity,
        "length": a.task.cartpole.length, "budget": a.inner_loop.budget,
        "hidden_layers": list(a.inner_loop.hidden_layers), "learning_rate": a.inner_loop.learning_rate,
        "optimizer": pb.Optimizer.Name(a.inner_loop.optimizer), "shape": list(a.parameters.shape),
        "values": list(struct.unpack("<%df" % (len(data) // 4), data)),
    }))
elif mode == "write":
    env = pb.Envelope(protocol_version=int(sys.argv[4]))  # the version the Swift side speaks
    r = env.result
    r.run_id, r.iteration, r.slot, r.attempt, r.parameter_version = "py-run", 4, 1, 2, 4
    r.update.shape.append(3)
    r.update.data = struct.pack("<3f", 0.5, -1.25, 3.0)
    s = r.statistics
    s.mean_return, s.episodes, s.mean_loss, s.env_steps, s.gradient_updates, s.seconds = 17.5, 3, 0.25, 900, 800, 1.5
    open(path, "wb").write(env.SerializeToString())
else:
    sys.exit("unknown mode " + mode)
