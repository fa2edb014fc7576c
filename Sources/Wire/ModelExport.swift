import Foundation
import NeuralNet

/// θ in the formats PyTorch users load: safetensors (named tensors) and ONNX (the Q-network as a graph).
///
/// Layer l of the MLP becomes PyTorch's `nn.Sequential(Linear, ReLU, …, Linear)` entry 2l: tensors `2l.weight`
/// (outputs × inputs, PyTorch's layout: our row-major inputs × outputs transposed) and `2l.bias`, so
/// `model.load_state_dict(safetensors.torch.load_file(path))` fills such a Sequential directly. The ONNX graph
/// computes Q = (ReLU(x·W₀ + b₀) …)·W_L + b_L with `Gemm` and `Relu` nodes over the same numbers.
public enum ModelExport {
    public struct ExportError: Error, CustomStringConvertible {
        public let description: String
    }

    /// What a file says about itself, in both formats (safetensors `__metadata__`, ONNX `metadata_props`): enough to
    /// rebuild the Q-network and check θ's hash with no knowledge of metatrain — the layer sizes, the activation, how
    /// the tensors compose, and how `params_sha256` is computed from them. The caller adds what the run knows (run id,
    /// iteration, algorithm, family, what the observation's entries and the actions mean).
    public static func selfDescription(_ mlp: MLP) -> [String: String] {
        let last = mlp.layers.count - 1
        // The same, for a program: each layer's safetensors names, the stored weight layout and the activation after it.
        let layers = mlp.layers.indices.map { i in
            "{\"weight\": \"\(2 * i).weight\", \"bias\": \"\(2 * i).bias\", \"weight_layout\": \"outputs_by_inputs\", \"activation\": \"\(i < last ? "relu" : "none")\"}"
        }
        return [
            "layers": "[" + layers.joined(separator: ", ") + "]",
            "architecture": "mlp",
            "layer_sizes": mlp.sizes.map(String.init).joined(separator: ","),
            "activation": "relu",
            "forward": "h_0 = observation (a row of \(mlp.inputSize) float32); h_{i+1} = relu(h_i @ W_i + b_i) for i < \(last), "
                + "q_values = h_\(last) @ W_\(last) + b_\(last) (\(mlp.outputSize) values, one per action; the greedy action is their argmax). "
                + "safetensors: W_i = tensor '{2i}.weight' transposed (it is stored outputs x inputs, as torch.nn.Linear), "
                + "b_i = '{2i}.bias', so nn.Sequential(Linear, ReLU, ..., Linear) loads it as is; ONNX: initializers W{i}, b{i} "
                + "(inputs x outputs), input 'observation', output 'q_values'",
            "params_sha256_recipe": "SHA-256 of the concatenation, for i = 0..\(last), of W_i (inputs x outputs, row-major) "
                + "then b_i, each value as float32 little-endian: metatrain's flat theta",
        ]
    }

    /// The safetensors file: an 8-byte little-endian header length, a JSON header (names, dtype F32, shapes, byte
    /// offsets, and `__metadata__` strings), then the tensors' little-endian bytes.
    public static func safetensors(mlp: MLP, theta: ParameterVector, metadata: [String: String]) throws -> [UInt8] {
        try mlp.validate(theta)
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        for (l, layer) in mlp.layers.enumerated() {
            var weight = [Float](repeating: 0, count: layer.inputs * layer.outputs)
            for i in 0..<layer.inputs {
                for o in 0..<layer.outputs { weight[o * layer.inputs + i] = theta[layer.weightOffset + i * layer.outputs + o] }
            }
            tensors.append(("\(2 * l).weight", [layer.outputs, layer.inputs], weight))
            tensors.append(("\(2 * l).bias", [layer.outputs], Array(theta.values[layer.biasOffset..<(layer.biasOffset + layer.outputs)])))
        }
        var header: [String: Any] = ["__metadata__": metadata.merging(selfDescription(mlp).merging(["format": "pt"]) { $1 }) { $1 }]
        var offset = 0
        var body: [UInt8] = []
        for t in tensors {
            let bytes = t.values.littleEndianBytes
            header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes.count]]
            body += bytes
            offset += bytes.count
        }
        var json = [UInt8](try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        while json.count % 8 != 0 { json.append(0x20) }   // pad with spaces so the tensors start 8-aligned
        return withUnsafeBytes(of: UInt64(json.count).littleEndian, Array.init) + json + body
    }

    /// An ONNX model (IR version 7, opset 13): input `observation` [batch, inputs], output `q_values`
    /// [batch, actions], weights as initializers in our row-major inputs × outputs layout (Gemm without transposes).
    public static func onnx(mlp: MLP, theta: ParameterVector, producerVersion: String,
                            metadata: [String: String] = [:]) throws -> [UInt8] {
        try mlp.validate(theta)
        var graph = ProtoWriter()
        var input = "observation"
        for (l, layer) in mlp.layers.enumerated() {
            let w = "W\(l)", b = "b\(l)", y = l == mlp.layers.count - 1 ? "q_values" : "h\(l)"
            let gemmOut = l == mlp.layers.count - 1 ? y : "z\(l)"
            graph.message(1, node(inputs: [input, w, b], outputs: [gemmOut], name: "gemm\(l)", op: "Gemm"))
            if l < mlp.layers.count - 1 { graph.message(1, node(inputs: [gemmOut], outputs: [y], name: "relu\(l)", op: "Relu")) }
            let weights = Array(theta.values[layer.weightOffset..<(layer.weightOffset + layer.inputs * layer.outputs)])
            graph.message(5, tensor(name: w, dims: [layer.inputs, layer.outputs], values: weights))
            graph.message(5, tensor(name: b, dims: [layer.outputs], values: Array(theta.values[layer.biasOffset..<(layer.biasOffset + layer.outputs)])))
            input = y
        }
        graph.string(2, "metatrain_q_network")
        graph.message(11, valueInfo(name: "observation", dims: [nil, mlp.inputSize]))
        graph.message(12, valueInfo(name: "q_values", dims: [nil, mlp.outputSize]))

        var model = ProtoWriter()
        model.varint(1, 7)                                   // ir_version
        model.string(2, "metatrain")                         // producer_name
        model.string(3, producerVersion)                     // producer_version
        model.message(7, graph)                              // graph
        var opset = ProtoWriter()
        opset.string(1, "")                                  // the default ONNX domain
        opset.varint(2, 13)
        model.message(8, opset)                              // opset_import
        for (key, value) in metadata.merging(selfDescription(mlp), uniquingKeysWith: { $1 }).sorted(by: { $0.key < $1.key }) {
            var entry = ProtoWriter()
            entry.string(1, key)
            entry.string(2, value)
            model.message(14, entry)                         // metadata_props (StringStringEntryProto)
        }
        return model.bytes
    }

    static func node(inputs: [String], outputs: [String], name: String, op: String) -> ProtoWriter {
        var n = ProtoWriter()
        for i in inputs { n.string(1, i) }
        for o in outputs { n.string(2, o) }
        n.string(3, name)
        n.string(4, op)
        return n
    }

    /// A float32 TensorProto with raw little-endian data.
    static func tensor(name: String, dims: [Int], values: [Float]) -> ProtoWriter {
        var t = ProtoWriter()
        for d in dims { t.varint(1, UInt64(d)) }
        t.varint(2, 1)                                       // data_type FLOAT
        t.string(8, name)
        t.bytes(9, values.littleEndianBytes)
        return t
    }

    /// A float tensor ValueInfoProto; a nil dimension is the symbolic `batch`.
    static func valueInfo(name: String, dims: [Int?]) -> ProtoWriter {
        var shape = ProtoWriter()
        for d in dims {
            var dim = ProtoWriter()
            if let d { dim.varint(1, UInt64(d)) } else { dim.string(2, "batch") }
            shape.message(1, dim)
        }
        var tensorType = ProtoWriter()
        tensorType.varint(1, 1)                              // elem_type FLOAT
        tensorType.message(2, shape)
        var type = ProtoWriter()
        type.message(1, tensorType)
        var info = ProtoWriter()
        info.string(1, name)
        info.message(2, type)
        return info
    }
}
