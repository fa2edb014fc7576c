import CProtobufC
import DQN
import Environments
import MetaLearning
import MetaTrainProto
import NeuralNet

// Registration, liveness and control: hello, welcome, heartbeat, error, goodbye, status. Each message's encoder
// and decoder stand side by side, so a change to its .proto fields touches this file only.

extension WireCodec {
    static func encodeHello(_ h: Hello, _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__Hello> {
        let m: UnsafeMutablePointer<Metatrain__V1__Hello> = arena.message { metatrain__v1__hello__init($0) }
        m.pointee.host = arena.string(h.host)
        m.pointee.cores = UInt32(clamping: h.cores)
        m.pointee.threads = UInt32(clamping: h.threads)
        m.pointee.previous_worker_id = arena.string(h.previousWorkerID)
        let n: UnsafeMutablePointer<Metatrain__V1__Numerics> = arena.message { metatrain__v1__numerics__init($0) }
        n.pointee.kernel = arena.string(h.numerics.kernel)
        n.pointee.fingerprint = arena.string(h.numerics.fingerprint)
        n.pointee.portable_kernel = arena.string(h.numerics.portableKernel)
        n.pointee.portable_fingerprint = arena.string(h.numerics.portableFingerprint)
        n.pointee.cpu = arena.string(h.numerics.cpu)
        n.pointee.environment = arena.string(h.numerics.environment)
        m.pointee.numerics = n
        return m
    }

    static func encodeWelcome(_ w: Welcome, _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__Welcome> {
        let m: UnsafeMutablePointer<Metatrain__V1__Welcome> = arena.message { metatrain__v1__welcome__init($0) }
        m.pointee.run_id = arena.string(w.runID)
        m.pointee.worker_id = arena.string(w.workerID)
        m.pointee.heartbeat_interval_ms = UInt32(clamping: w.heartbeatIntervalMs)
        m.pointee.liveness = UInt32(clamping: w.liveness)
        m.pointee.numerics = encodeNumericsPolicy(w.numerics)
        return m
    }

    static func encodeHeartbeat(_ envSteps: UInt64, _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__Heartbeat> {
        let m: UnsafeMutablePointer<Metatrain__V1__Heartbeat> = arena.message { metatrain__v1__heartbeat__init($0) }
        m.pointee.env_steps = envSteps
        return m
    }

    static func encodeError(_ e: ErrorReply, _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__ErrorReply> {
        let m: UnsafeMutablePointer<Metatrain__V1__ErrorReply> = arena.message { metatrain__v1__error_reply__init($0) }
        m.pointee.code = Metatrain__V1__ErrorCode(rawValue: numericCast(e.code.rawValue))
        m.pointee.message = arena.string(e.message)
        if let k = e.key {
            m.pointee.iteration = UInt64(k.iteration); m.pointee.slot = UInt32(k.slot); m.pointee.attempt = UInt32(k.attempt)
            m.pointee.has_key = 1
        }
        return m
    }

    static func encodeGoodbye(_ reason: String, resumable: Bool, _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__Goodbye> {
        let m: UnsafeMutablePointer<Metatrain__V1__Goodbye> = arena.message { metatrain__v1__goodbye__init($0) }
        m.pointee.reason = arena.string(reason)
        m.pointee.resumable = resumable ? 1 : 0
        return m
    }

    static func encodeStatusRequest(_ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__StatusRequest> {
        let m: UnsafeMutablePointer<Metatrain__V1__StatusRequest> = arena.message { metatrain__v1__status_request__init($0) }
        return m
    }

    static func encodeStatusReply(_ json: String, _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__StatusReply> {
        let m: UnsafeMutablePointer<Metatrain__V1__StatusReply> = arena.message { metatrain__v1__status_reply__init($0) }
        m.pointee.json = arena.string(json)
        return m
    }
}

extension WireCodec.Decoder {
    func hello(_ m: Metatrain__V1__Hello) throws(WireError) -> Message {
        let threads = Int(m.threads)
        guard threads >= 1 && threads <= limits.maxThreads else {
            throw .invalidField("hello.threads", reason: "\(threads) is outside 1...\(limits.maxThreads)")
        }
        guard let n = m.numerics?.pointee else { throw .invalidField("hello.numerics", reason: "missing") }
        let numerics = NumericsReport(
            kernel: try kernelName(n.kernel, "hello.numerics.kernel"),
            fingerprint: try fingerprint(n.fingerprint, "hello.numerics.fingerprint"),
            portableKernel: try kernelName(n.portable_kernel, "hello.numerics.portable_kernel"),
            portableFingerprint: try fingerprint(n.portable_fingerprint, "hello.numerics.portable_fingerprint"),
            cpu: try string(n.cpu, "hello.numerics.cpu"),
            environment: try environment(n.environment))
        return .hello(Hello(host: try string(m.host, "hello.host"), cores: Int(m.cores), threads: threads,
                            previousWorkerID: try string(m.previous_worker_id, "hello.previous_worker_id"),
                            numerics: numerics))
    }

    /// A hello's environment identity: "none" when empty (a worker without environment servers), at most 512 bytes.
    func environment(_ p: UnsafeMutablePointer<CChar>?) throws(WireError) -> String {
        let text = try string(p, "hello.numerics.environment", limit: 512)
        return text.isEmpty ? "none" : text
    }

    func welcome(_ m: Metatrain__V1__Welcome) throws(WireError) -> Message {
        guard limits.welcomeHeartbeatIntervalMs.contains(Int(m.heartbeat_interval_ms)) else {
            throw .invalidField("welcome.heartbeat_interval_ms", reason: "\(m.heartbeat_interval_ms) is outside \(limits.welcomeHeartbeatIntervalMs)")
        }
        guard limits.welcomeLiveness.contains(Int(m.liveness)) else {
            throw .invalidField("welcome.liveness", reason: "\(m.liveness) is outside \(limits.welcomeLiveness)")
        }
        return .welcome(Welcome(runID: try identifier(m.run_id, "welcome.run_id"),
                                workerID: try identifier(m.worker_id, "welcome.worker_id"),
                                heartbeatIntervalMs: Int(m.heartbeat_interval_ms), liveness: Int(m.liveness),
                                numerics: try numericsPolicy(m.numerics, "welcome.numerics")))
    }

    func heartbeat(_ m: Metatrain__V1__Heartbeat) throws(WireError) -> Message {
        return .heartbeat(envSteps: m.env_steps)
    }

    func error(_ m: Metatrain__V1__ErrorReply) throws(WireError) -> Message {
        guard let code = ErrorCode(rawValue: Int32(bitPattern: UInt32(truncatingIfNeeded: m.code.rawValue))) else {
            throw .unknownEnum("error.code", value: Int64(m.code.rawValue))
        }
        guard m.has_key != 0 || (m.iteration == 0 && m.slot == 0 && m.attempt == 0) else {
            throw .invalidField("error.has_key", reason: "a slot key is set but has_key is false")
        }
        let key = m.has_key == 0 ? nil : try key(iteration: m.iteration, slot: m.slot, attempt: m.attempt, "error")
        return .error(ErrorReply(code: code, message: try string(m.message, "error.message"), key: key))
    }

    func goodbye(_ m: Metatrain__V1__Goodbye) throws(WireError) -> Message {
        return .goodbye(reason: try string(m.reason, "goodbye.reason"), resumable: m.resumable != 0)
    }

    func statusRequest(_ m: Metatrain__V1__StatusRequest) throws(WireError) -> Message {
        return .statusRequest
    }

    func statusReply(_ m: Metatrain__V1__StatusReply) throws(WireError) -> Message {
        return .statusReply(json: try string(m.json, "status_reply.json", limit: limits.maxStatusBytes))
    }
}
