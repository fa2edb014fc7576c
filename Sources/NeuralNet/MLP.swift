/// Errors NeuralNet reports for shapes and sizes that come from configuration.
public enum NeuralNetError: Error, Equatable, CustomStringConvertible {
    case invalidLayerSizes([Int])
    case parameterCountMismatch(expected: Int, got: Int)

    public var description: String {
        switch self {
        case .invalidLayerSizes(let s):
            return "network layer sizes \(s) are invalid: need at least an input and an output size, all positive"
        case .parameterCountMismatch(let e, let g):
            return "parameter vector has \(g) values, the network needs \(e)"
        }
    }
}

/// A multilayer perceptron: ReLU hidden layers, a linear output (one Q-value per action).
///
/// The network is only a shape; its parameters live in a `ParameterVector` laid out layer after
/// layer as [weights (inputs × outputs, row-major), bias (outputs)], so y = x·W + b is one
/// row-major GEMM per layer for a batch of x. Scratch memory comes from an `MLPWorkspace`.
public struct MLP: Sendable, Equatable {
    /// Where one layer's weights and bias sit in the flat parameter vector.
    public struct Layer: Sendable, Equatable {
        public let inputs: Int
        public let outputs: Int
        public let weightOffset: Int
        public var biasOffset: Int { weightOffset + inputs * outputs }
        public var parameterCount: Int { (inputs + 1) * outputs }
    }

    /// Sizes from input to output, e.g. [4, 64, 64, 2].
    public let sizes: [Int]
    public let layers: [Layer]
    public let parameterCount: Int
    /// The GEMM implementation this network's passes use.
    public var backend: GEMMBackend

    public init(sizes: [Int], backend: GEMMBackend = .default) throws {
        guard sizes.count >= 2, sizes.allSatisfy({ $0 > 0 }) else { throw NeuralNetError.invalidLayerSizes(sizes) }
        var layers: [Layer] = []
        var offset = 0
        for l in 1..<sizes.count {
            let layer = Layer(inputs: sizes[l - 1], outputs: sizes[l], weightOffset: offset)
            layers.append(layer)
            offset += layer.parameterCount
        }
        self.sizes = sizes
        self.layers = layers
        self.parameterCount = offset
        self.backend = backend
    }

    public var inputSize: Int { sizes[0] }
    public var outputSize: Int { sizes[sizes.count - 1] }

    /// Fresh parameters: weights and biases ~ U(−1/√fan_in, 1/√fan_in), PyTorch's `nn.Linear` default.
    public func initialParameters(using rng: inout SeededRNG) -> ParameterVector {
        var p = ParameterVector(zeros: parameterCount)
        for layer in layers {
            let bound = 1 / Float(layer.inputs).squareRoot()
            for i in layer.weightOffset..<(layer.weightOffset + layer.parameterCount) {
                p[i] = (2 * rng.nextFloat() - 1) * bound
            }
        }
        return p
    }

    /// Throws unless `parameters` has exactly this network's parameter count.
    public func validate(_ parameters: ParameterVector) throws {
        guard parameters.count == parameterCount else {
            throw NeuralNetError.parameterCountMismatch(expected: parameterCount, got: parameters.count)
        }
    }
}

/// Preallocated buffers for forward, backward and R-operator passes of one `MLP` up to a batch size.
///
/// Allocated once per inner loop so the DQN update does no heap allocation. Not thread-safe: one
/// workspace per thread.
public final class MLPWorkspace {
    public let mlp: MLP
    public let capacity: Int
    /// activations[l] is batch × sizes[l]; activations[0] holds a copy of the input.
    let activations: [UnsafeMutablePointer<Float>]
    /// deltas[l] is dLoss/dZ_l (batch × sizes[l]), l ≥ 1; deltas[L] is dLoss/dQ.
    let deltas: [UnsafeMutablePointer<Float>]
    /// R-operator buffers (Pearlmutter): directional derivatives of activations and deltas.
    let rActivations: [UnsafeMutablePointer<Float>]
    let rDeltas: [UnsafeMutablePointer<Float>]
    /// d²Loss/dQ² (diagonal), batch × outputs, for Hessian-vector products.
    let outputCurvature: UnsafeMutablePointer<Float>

    public init(mlp: MLP, capacity: Int) {
        precondition(capacity > 0, "workspace capacity must be positive, got \(capacity)")
        self.mlp = mlp
        self.capacity = capacity
        func buffers() -> [UnsafeMutablePointer<Float>] {
            mlp.sizes.map { size in
                let p = UnsafeMutablePointer<Float>.allocate(capacity: capacity * size)
                p.initialize(repeating: 0, count: capacity * size)
                return p
            }
        }
        activations = buffers(); deltas = buffers(); rActivations = buffers(); rDeltas = buffers()
        outputCurvature = .allocate(capacity: capacity * mlp.outputSize)
        outputCurvature.initialize(repeating: 0, count: capacity * mlp.outputSize)
    }

    deinit {
        for p in activations + deltas + rActivations + rDeltas { p.deallocate() }
        outputCurvature.deallocate()
    }

    /// The network's output after `forward`: batch × outputs, row-major.
    public var output: UnsafeMutablePointer<Float> { activations[activations.count - 1] }
    /// Where the caller writes dLoss/dQ before `backward`.
    public var outputGradient: UnsafeMutablePointer<Float> { deltas[deltas.count - 1] }
}
