import DQN
import Environments
import NeuralNet

/// A hash of the bits a fixed small workload produces through the real kernels: two processes with the same
/// fingerprint compute the same slot results.
///
/// A run's θ is bit-identical across workers only if every worker rounds the same way. Kernel choice, a BLAS
/// core type, libm's ifunc variants (sin/cos/pow pick FMA code paths by CPU) and compiler settings can all
/// change the bits, so rather than trusting a list of what might differ, each worker runs the pieces a slot is
/// made of: GEMMs of every shape class through forward/backward passes, Adam steps, replay sampling and the
/// ε-schedule (a short DQN inner loop on CartPole and on Acrobot, whose RK4 calls libm), and an exact
/// Hessian-vector product (MAML's). The coordinator compares fingerprints at hello (`numerics:` in cluster.yaml).
public struct NumericsFingerprint: Sendable, Equatable, CustomStringConvertible {
    /// The kernel the workload ran on.
    public let kernel: GEMMBackend
    /// 16 hex digits (FNV-1a, 64 bits, over every output bit pattern).
    public let hash: String

    public var description: String { "\(hash) (kernel \(kernel.rawValue))" }

    /// Runs the workload on `kernel` (a few milliseconds).
    public static func compute(kernel: GEMMBackend) throws -> NumericsFingerprint {
        var hasher = FNV1a()
        var config = DQNConfig()
        config.hiddenLayers = [48, 40]   // widths off the vector multiples, so tails and panels both run
        config.batchSize = 33
        config.learningStarts = 64
        config.bufferCapacity = 1_000
        config.doubleDQN = true
        config.maxGradientNorm = 10
        config.targetUpdateInterval = 25
        for (index, task) in [TaskSpec.cartPole(CartPoleParameters()), .acrobot(AcrobotParameters())].enumerated() {
            let mlp = try makeNetwork(for: task, config: config, backend: kernel)
            var rng = SeededRNG(seed: 0x6e75_6d65_7269_6373 &+ UInt64(index))
            let theta = mlp.initialParameters(using: &rng)
            let adapted = try adapt(initial: theta, task: task, budget: index == 0 ? 300 : 150, seed: 17 &+ UInt64(index),
                                    config: config, backend: kernel)
            hasher.add(adapted.parameters.values)
            for r in adapted.episodeReturns { hasher.add(r) }
            // MAML's product: H·v of the TD-regression loss at the adapted parameters.
            let batch = 17
            let inputs = (0..<(batch * mlp.inputSize)).map { _ in Float(rng.nextGaussian()) }
            let actions = (0..<batch).map { _ in Int32(rng.nextInt(below: mlp.outputSize)) }
            let targets = (0..<batch).map { _ in Float(rng.nextGaussian()) }
            let direction = ParameterVector((0..<mlp.parameterCount).map { _ in Float(rng.nextGaussian()) })
            let workspace = MLPWorkspace(mlp: mlp, capacity: batch)
            hasher.add(mlp.hessianVectorProduct(adapted.parameters, direction: direction, inputs: inputs, actions: actions,
                                                targets: targets, loss: .huber, workspace: workspace).values)
        }
        return NumericsFingerprint(kernel: kernel, hash: hasher.hex)
    }

    public init(kernel: GEMMBackend, hash: String) {
        self.kernel = kernel
        self.hash = hash
    }
}

/// How a run treats workers whose numerics differ (cluster.yaml `numerics`).
public enum NumericsPolicy: String, Sendable, CaseIterable, Codable {
    /// The run's fingerprint is the first worker's (or the checkpoint's); a worker with another is refused.
    case strict
    /// Every worker computes on its portable (mul-add) kernel, whose bits are the same on every x86-64 CPU;
    /// the portable fingerprints must still match (they catch differences outside the kernels, e.g. libm).
    case portable
    /// Accept every worker: the run is not bit-reproducible, and says so in its log and checkpoints.
    case any
}

/// What a worker computes with, as it reports it in hello: its default and portable kernels and their
/// fingerprints, and the CPU's name.
public struct NumericsReport: Equatable, Sendable {
    public var kernel: String
    public var fingerprint: String
    public var portableKernel: String
    public var portableFingerprint: String
    public var cpu: String
    /// What the worker's gymnasium environment servers compute with ("HASH (python …, gymnasium …, numpy …)"), or
    /// "none" when it has none; a run of gymnasium tasks holds it to the run's like the fingerprint.
    public var environment: String

    public init(kernel: String, fingerprint: String, portableKernel: String, portableFingerprint: String, cpu: String,
                environment: String = "none") {
        self.kernel = kernel; self.fingerprint = fingerprint
        self.portableKernel = portableKernel; self.portableFingerprint = portableFingerprint; self.cpu = cpu
        self.environment = environment
    }

    /// Runs the fingerprint workload on this process's kernel (`GEMMBackend.selected`) and on the portable one.
    public static func measure() throws -> NumericsReport {
        let own = try NumericsFingerprint.compute(kernel: .selected)
        let portable = GEMMBackend.portable == .selected ? own : try NumericsFingerprint.compute(kernel: .portable)
        return NumericsReport(kernel: own.kernel.rawValue, fingerprint: own.hash, portableKernel: portable.kernel.rawValue,
                              portableFingerprint: portable.hash, cpu: Numerics.cpuModel)
    }

    /// The kernel and fingerprint that count under `policy` (strict and any: the default kernel's).
    public func effective(under policy: NumericsPolicy) -> (kernel: String, fingerprint: String) {
        policy == .portable ? (portableKernel, portableFingerprint) : (kernel, fingerprint)
    }

    /// The fingerprint that counts under `policy` for a run whose tasks run in environment servers (`environment`:
    /// their identity joins it, so a worker with another gymnasium, numpy or Python is told apart) or not.
    public func effective(under policy: NumericsPolicy, environment holdsEnvironment: Bool) -> (kernel: String, fingerprint: String) {
        let (kernel, fingerprint) = effective(under: policy)
        return (kernel, holdsEnvironment ? "\(fingerprint)+env \(environment)" : fingerprint)
    }
}

/// The numerics a run holds its workers to, kept in every checkpoint.
public struct RunNumerics: Equatable, Sendable {
    public var policy: NumericsPolicy
    /// The fingerprint every worker must match; nil until the first worker registers (and under `any`,
    /// the first worker's, kept for information).
    public var fingerprint: String?
    /// The kernel and CPU of the worker whose fingerprint it is.
    public var kernel: String
    public var cpu: String

    public init(policy: NumericsPolicy, fingerprint: String? = nil, kernel: String = "", cpu: String = "") {
        self.policy = policy; self.fingerprint = fingerprint; self.kernel = kernel; self.cpu = cpu
    }

    /// Whether a run with these numerics reproduces bit for bit: not under `any`.
    public var isReproducible: Bool { policy != .any }
}
