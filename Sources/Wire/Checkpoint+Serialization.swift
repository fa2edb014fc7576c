import CProtobufC
import MetaLearning
import MetaTrainProto
import NeuralNet

/// What a checkpoint holds (DESIGN.md invariant 6): θ, the meta-optimiser's state, the iteration,
/// the seed and the hash of the configuration that produced them, and the numerics the run holds workers to.
public struct CheckpointRecord: Equatable, Sendable {
    public static let formatVersion: UInt32 = 1
    public var runID: String
    public var algorithm: MetaAlgorithm
    public var runSeed: UInt64
    public var configHash: String
    public var state: MetaState
    public var createdUnixMs: UInt64
    /// nil in checkpoints written before numerics existed (protocol version 2).
    public var numerics: RunNumerics?

    public init(runID: String, algorithm: MetaAlgorithm, runSeed: UInt64, configHash: String, state: MetaState,
                createdUnixMs: UInt64, numerics: RunNumerics? = nil) {
        self.runID = runID; self.algorithm = algorithm; self.runSeed = runSeed; self.configHash = configHash
        self.state = state; self.createdUnixMs = createdUnixMs; self.numerics = numerics
    }
}

/// The protobuf payload of a checkpoint file (the file's framing and checksum live in Cluster).
public enum CheckpointCodec {
    public static func encode(_ r: CheckpointRecord) -> [UInt8] {
        let arena = Arena()
        let m: UnsafeMutablePointer<Metatrain__V1__Checkpoint> = arena.message { metatrain__v1__checkpoint__init($0) }
        m.pointee.format_version = CheckpointRecord.formatVersion
        m.pointee.run_id = arena.string(r.runID)
        m.pointee.iteration = UInt64(r.state.iteration)
        m.pointee.algorithm = WireCodec.encodeAlgorithm(r.algorithm)
        m.pointee.run_seed = r.runSeed
        m.pointee.config_hash = arena.string(r.configHash)
        m.pointee.parameters = WireCodec.encodeTensor(r.state.theta.values, arena)
        if let previous = r.state.previousTheta {
            m.pointee.previous_parameters = WireCodec.encodeTensor(previous.values, arena)
        }
        let opt = r.state.optimizer
        m.pointee.meta_optimizer = WireCodec.encodeOptimizer(opt.kind)
        if opt.kind == .adam {
            m.pointee.optimizer_m = WireCodec.encodeTensor(opt.m, arena)
            m.pointee.optimizer_v = WireCodec.encodeTensor(opt.v, arena)
        }
        m.pointee.optimizer_step = UInt64(opt.step)
        m.pointee.created_unix_ms = r.createdUnixMs
        if let n = r.numerics {
            m.pointee.numerics_policy = WireCodec.encodeNumericsPolicy(n.policy)
            m.pointee.numerics_fingerprint = arena.string(n.fingerprint ?? "")
            m.pointee.numerics_kernel = arena.string(n.kernel)
            m.pointee.numerics_cpu = arena.string(n.cpu)
        }
        let size = metatrain__v1__checkpoint__get_packed_size(m)
        var out = [UInt8](repeating: 0, count: size)
        _ = out.withUnsafeMutableBufferPointer { metatrain__v1__checkpoint__pack(m, $0.baseAddress) }
        return out
    }

    /// Decodes and validates a payload; `settings`, when given, must agree with its meta-optimiser
    /// (nil: inspect only, take the checkpoint's own).
    public static func decode(_ bytes: [UInt8], settings: MetaSettings?) throws(WireError) -> CheckpointRecord {
        let unpacked = bytes.withUnsafeBufferPointer { metatrain__v1__checkpoint__unpack(nil, $0.count, $0.baseAddress) }
        guard let p = unpacked else { throw .undecodable(bytes: bytes.count) }
        defer { metatrain__v1__checkpoint__free_unpacked(p, nil) }
        let m = p.pointee
        guard m.format_version == CheckpointRecord.formatVersion else {
            throw .invalidField("checkpoint.format_version", reason: "\(m.format_version) is not \(CheckpointRecord.formatVersion)")
        }
        var limits = WireLimits()
        limits.maxTensorValues = Int(Int32.max)
        let d = WireCodec.Decoder(limits: limits)
        let theta = try d.tensor(m.parameters, "checkpoint.parameters")
        let kind: OptimizerKind
        switch m.meta_optimizer {
        case METATRAIN__V1__OPTIMIZER__OPTIMIZER_SGD: kind = .sgd
        case METATRAIN__V1__OPTIMIZER__OPTIMIZER_ADAM: kind = .adam
        default: throw .unknownEnum("checkpoint.meta_optimizer", value: Int64(m.meta_optimizer.rawValue))
        }
        if let settings, kind != settings.optimizer {
            throw .invalidField("checkpoint.meta_optimizer", reason: "checkpoint has \(kind), the configuration says \(settings.optimizer)")
        }
        var optimizer = Optimizer(kind: kind, parameterCount: theta.count, learningRate: settings?.outerStep ?? 0)
        let step = try d.version(m.optimizer_step, "checkpoint.optimizer_step")
        if kind == .adam {
            let mv = try d.tensor(m.optimizer_m, "checkpoint.optimizer_m"), vv = try d.tensor(m.optimizer_v, "checkpoint.optimizer_v")
            guard mv.count == theta.count, vv.count == theta.count else {
                throw .invalidField("checkpoint.optimizer_m/v", reason: "sizes \(mv.count)/\(vv.count) differ from θ's \(theta.count)")
            }
            optimizer.restore(m: mv.values, v: vv.values, step: step)
        } else {
            optimizer.restore(m: [], v: [], step: step)
        }
        let iteration = try d.version(m.iteration, "checkpoint.iteration")
        var previousTheta: ParameterVector?
        if m.previous_parameters != nil {
            let previous = try d.tensor(m.previous_parameters, "checkpoint.previous_parameters")
            guard previous.count == theta.count else {
                throw .invalidField("checkpoint.previous_parameters", reason: "\(previous.count) values; θ has \(theta.count)")
            }
            previousTheta = previous
        }
        var numerics: RunNumerics?
        if m.numerics_policy != METATRAIN__V1__NUMERICS_POLICY__NUMERICS_UNSPECIFIED {
            let fingerprint = try d.string(m.numerics_fingerprint, "checkpoint.numerics_fingerprint", limit: 16 + 5 + 512)
            numerics = RunNumerics(
                policy: try d.numericsPolicy(m.numerics_policy, "checkpoint.numerics_policy"),
                fingerprint: fingerprint.isEmpty ? nil : try d.runFingerprint(m.numerics_fingerprint, "checkpoint.numerics_fingerprint"),
                kernel: try d.string(m.numerics_kernel, "checkpoint.numerics_kernel"),
                cpu: try d.string(m.numerics_cpu, "checkpoint.numerics_cpu"))
        }
        return CheckpointRecord(
            runID: try d.identifier(m.run_id, "checkpoint.run_id"),
            algorithm: try d.algorithm(m.algorithm, "checkpoint.algorithm"), runSeed: m.run_seed,
            configHash: try d.string(m.config_hash, "checkpoint.config_hash"),
            state: MetaState(theta: theta, optimizer: optimizer, iteration: iteration, previousTheta: previousTheta),
            createdUnixMs: m.created_unix_ms, numerics: numerics)
    }
}
