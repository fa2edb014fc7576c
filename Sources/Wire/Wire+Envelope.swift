import CProtobufC
import DQN
import Environments
import Foundation
import MetaLearning
import MetaTrainProto
import NeuralNet

/// Encodes and decodes `Message`s as metatrain.v1 protobuf envelopes.
public enum WireCodec {
    /// The protobuf bytes of `message` inside an envelope with this build's protocol version.
    public static func encode(_ message: Message) -> [UInt8] {
        encode(message, version: protocolVersion)
    }

    /// Like `encode(_:)` with an explicit version (tests use it to send a wrong one).
    public static func encode(_ message: Message, version: UInt32) -> [UInt8] {
        encodeMessage(message, version: version).bytes
    }

    /// The protobuf bytes of `message` in memory of their own, which a socket can send without copying.
    ///
    /// Why: a worker's result at θ of 1M floats is 4 MB; packed into an array, it was copied again into libzmq's
    /// message to reach the socket thread and once more to the coordinator's socket (docs/SCALING.md).
    public static func encodeMessage(_ message: Message, version: UInt32 = protocolVersion) -> EncodedMessage {
        let arena = Arena()
        // A result's update is packed from the vector's own memory (the one θ-sized tensor a worker sends).
        var update: [Float] = []
        if case .result(let r) = message { update = r.update.values }
        return arena.lending(update) {
            let envelope = envelope(message, version: version, arena)
            let encoded = EncodedMessage(capacity: metatrain__v1__envelope__get_packed_size(envelope))
            // protobuf-c writes exactly the size it reported; the count is what it says it wrote, never more.
            encoded.setCount(metatrain__v1__envelope__pack(envelope, encoded.start))
            return encoded
        }
    }

    /// The protobuf-c envelope of `message`, its storage in `arena`. `omitTensor` leaves out the tensor a
    /// `SharedTensorField` carries instead (an assignment's θ, an eval job's initial parameters).
    static func envelope(_ message: Message, version: UInt32, _ arena: Arena,
                         omitTensor: Bool = false) -> UnsafeMutablePointer<Metatrain__V1__Envelope> {
        let envelope: UnsafeMutablePointer<Metatrain__V1__Envelope> = arena.message { metatrain__v1__envelope__init($0) }
        envelope.pointee.protocol_version = version
        switch message {
        case .hello(let h):
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_HELLO
            envelope.pointee.hello = encodeHello(h, arena)
        case .welcome(let w):
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_WELCOME
            envelope.pointee.welcome = encodeWelcome(w, arena)
        case .heartbeat(let envSteps):
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_HEARTBEAT
            envelope.pointee.heartbeat = encodeHeartbeat(envSteps, arena)
        case .assignment(let a):
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_ASSIGNMENT
            envelope.pointee.assignment = encodeAssignment(a, arena, omitTensor: omitTensor)
        case .result(let r):
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_RESULT
            envelope.pointee.result = encodeResult(r, arena)
        case .error(let e):
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_ERROR
            envelope.pointee.error = encodeError(e, arena)
        case .goodbye(let reason, let resumable):
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_GOODBYE
            envelope.pointee.goodbye = encodeGoodbye(reason, resumable: resumable, arena)
        case .statusRequest:
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_STATUS_REQUEST
            envelope.pointee.status_request = encodeStatusRequest(arena)
        case .statusReply(let json):
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_STATUS_REPLY
            envelope.pointee.status_reply = encodeStatusReply(json, arena)
        case .evalRequest(let r):
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_EVAL_REQUEST
            envelope.pointee.eval_request = encodeEvalRequest(r, arena)
        case .evalJob(let j):
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_EVAL_JOB
            // initial_index 0 is proto3's default, so with omitTensor neither it nor the tensor is written.
            envelope.pointee.eval_job = encodeEvalJob(j.key, j.job, arena, initialIndex: omitTensor ? 0 : nil)
        case .evalOutcome(let o):
            envelope.pointee.body_case = METATRAIN__V1__ENVELOPE__BODY_EVAL_OUTCOME
            envelope.pointee.eval_outcome = encodeEvalOutcome(o, arena)
        }
        return envelope
    }

    /// Whether two vectors hold the same bit patterns (−0 and +0 differ, a NaN equals its own bits).
    public static func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && (a.isEmpty || a.withUnsafeBytes { pa in b.withUnsafeBytes { pb in memcmp(pa.baseAddress!, pb.baseAddress!, pa.count) == 0 } })
    }

    static func encodeTensor(_ values: [Float], _ arena: Arena) -> UnsafeMutablePointer<Metatrain__V1__Tensor> {
        let t: UnsafeMutablePointer<Metatrain__V1__Tensor> = arena.message { metatrain__v1__tensor__init($0) }
        t.pointee.n_shape = 1
        t.pointee.shape = arena.array([UInt32(values.count)])
        t.pointee.data = arena.floatBytes(values)
        return t
    }

    static func encodeAlgorithm(_ a: MetaAlgorithm) -> Metatrain__V1__Algorithm {
        switch a {
        case .reptile: return METATRAIN__V1__ALGORITHM__ALGORITHM_REPTILE
        case .fomaml: return METATRAIN__V1__ALGORITHM__ALGORITHM_FOMAML
        case .maml: return METATRAIN__V1__ALGORITHM__ALGORITHM_MAML
        case .distill: return METATRAIN__V1__ALGORITHM__ALGORITHM_DISTILL
        case .esMAML: return METATRAIN__V1__ALGORITHM__ALGORITHM_ES_MAML
        }
    }

    static func encodeNumericsPolicy(_ p: NumericsPolicy) -> Metatrain__V1__NumericsPolicy {
        switch p {
        case .strict: return METATRAIN__V1__NUMERICS_POLICY__NUMERICS_STRICT
        case .portable: return METATRAIN__V1__NUMERICS_POLICY__NUMERICS_PORTABLE
        case .any: return METATRAIN__V1__NUMERICS_POLICY__NUMERICS_ANY
        }
    }

    static func encodeOptimizer(_ o: OptimizerKind) -> Metatrain__V1__Optimizer {
        o == .adam ? METATRAIN__V1__OPTIMIZER__OPTIMIZER_ADAM : METATRAIN__V1__OPTIMIZER__OPTIMIZER_SGD
    }
}

extension WireCodec {
    /// Decodes and validates one envelope. Every field from the peer is checked; garbage throws.
    public static func decode(_ bytes: [UInt8], limits: WireLimits = WireLimits()) throws(WireError) -> Message {
        try bytes.withUnsafeBytes { buffer in Result { () throws(WireError) in try decode(buffer, limits: limits) } }.get()
    }

    /// Decodes and validates one envelope from bytes the caller holds (a received frame, read in place); a result's
    /// update is read from them directly (`decodeResultInPlace`).
    public static func decode(_ bytes: UnsafeRawBufferPointer, limits: WireLimits = WireLimits()) throws(WireError) -> Message {
        if let result = try decodeResultInPlace(bytes, limits: limits) { return result }
        return try decodeWhole(bytes, limits: limits)
    }

    /// `decode` with protobuf-c unpacking every field (the tensors copied out of `bytes` first).
    static func decodeWhole(_ bytes: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Message {
        try withEnvelope(bytes) { (unpacked) throws(WireError) -> Message in
            guard let envelope = unpacked else { throw .undecodable(bytes: bytes.count) }
            return try decodeWhole(envelope.pointee, limits: limits)
        }
    }

    /// Validates an unpacked envelope into a message.
    static func decodeWhole(_ e: Metatrain__V1__Envelope, limits: WireLimits) throws(WireError) -> Message {
        guard e.protocol_version == protocolVersion else {
            throw .protocolVersion(got: e.protocol_version, expected: protocolVersion)
        }
        let d = Decoder(limits: limits)
        switch e.body_case {
        case METATRAIN__V1__ENVELOPE__BODY_HELLO:
            return try d.hello(e.hello.pointee)
        case METATRAIN__V1__ENVELOPE__BODY_WELCOME:
            return try d.welcome(e.welcome.pointee)
        case METATRAIN__V1__ENVELOPE__BODY_HEARTBEAT:
            return try d.heartbeat(e.heartbeat.pointee)
        case METATRAIN__V1__ENVELOPE__BODY_ASSIGNMENT:
            return .assignment(try d.assignment(e.assignment.pointee))
        case METATRAIN__V1__ENVELOPE__BODY_RESULT:
            return .result(try d.result(e.result.pointee))
        case METATRAIN__V1__ENVELOPE__BODY_ERROR:
            return try d.error(e.error.pointee)
        case METATRAIN__V1__ENVELOPE__BODY_GOODBYE:
            return try d.goodbye(e.goodbye.pointee)
        case METATRAIN__V1__ENVELOPE__BODY_STATUS_REQUEST:
            return try d.statusRequest(e.status_request.pointee)
        case METATRAIN__V1__ENVELOPE__BODY_STATUS_REPLY:
            return try d.statusReply(e.status_reply.pointee)
        case METATRAIN__V1__ENVELOPE__BODY_EVAL_REQUEST:
            return try d.evalRequest(e.eval_request.pointee)
        case METATRAIN__V1__ENVELOPE__BODY_EVAL_JOB:
            return try d.evalJobMessage(e.eval_job.pointee)
        case METATRAIN__V1__ENVELOPE__BODY_EVAL_OUTCOME:
            return try d.evalOutcome(e.eval_outcome.pointee)
        default:
            throw .missingField("envelope.body")
        }
    }

    /// Field-by-field validation shared by the decoders.
    struct Decoder {
        let limits: WireLimits

        func string(_ p: UnsafeMutablePointer<CChar>?, _ field: String, limit: Int? = nil) throws(WireError) -> String {
            guard let p else { return "" }
            let limit = limit ?? limits.maxStringBytes
            let length = strnlen(p, limit + 1)
            guard length <= limit else {
                throw .tooLarge(field, size: length, limit: limit)
            }
            guard let s = String(validatingCString: p) else { throw .invalidField(field, reason: "not valid UTF-8") }
            return s
        }

        /// A run or worker id: 1-128 printable ASCII characters.
        func identifier(_ p: UnsafeMutablePointer<CChar>?, _ field: String) throws(WireError) -> String {
            try token(p, field, maxBytes: 128) { _ in "must be 1-128 printable ASCII characters without spaces" }
        }

        /// 1...`maxBytes` printable ASCII characters without spaces; `reason` says why the string is refused.
        func token(_ p: UnsafeMutablePointer<CChar>?, _ field: String, maxBytes: Int,
                   reason: (String) -> String) throws(WireError) -> String {
            let s = try string(p, field)
            guard !s.isEmpty, s.utf8.count <= maxBytes, s.utf8.allSatisfy({ $0 > 32 && $0 < 127 }) else {
                throw .invalidField(field, reason: reason(s))
            }
            return s
        }

        func key(iteration: UInt64, slot: UInt32, attempt: UInt32, _ field: String) throws(WireError) -> SlotKey {
            guard iteration < UInt64(Int32.max), slot < UInt32(clamping: limits.maxSlots), attempt < UInt32(clamping: limits.maxAttempts) else {
                throw .invalidField("\(field).iteration/slot/attempt", reason: "out of range (\(iteration), \(slot), \(attempt))")
            }
            return SlotKey(iteration: Int(iteration), slot: Int(slot), attempt: Int(attempt))
        }

        func version(_ v: UInt64, _ field: String) throws(WireError) -> Int {
            guard v < UInt64(Int32.max) else { throw .invalidField(field, reason: "\(v) is out of range") }
            return Int(v)
        }

        /// A float32 tensor: shape product × 4 must equal the bytes, every value finite.
        func tensor(_ p: UnsafeMutablePointer<Metatrain__V1__Tensor>?, _ field: String) throws(WireError) -> ParameterVector {
            guard let t = p?.pointee else { throw .missingField(field) }
            return try tensor(shape: (0..<t.n_shape).map { t.shape[$0] },
                              data: UnsafeRawBufferPointer(start: t.data.data, count: t.data.data == nil ? 0 : t.data.len), field)
        }

        /// A float32 tensor from its shape and the bytes of its data, wherever they are (protobuf-c's copy, or a
        /// received frame read in place): the same checks as `tensor(_:_:)`.
        func tensor(shape: [UInt32], data bytes: UnsafeRawBufferPointer, _ field: String) throws(WireError) -> ParameterVector {
            guard !shape.isEmpty, shape.count <= 8, shape.allSatisfy({ $0 > 0 }) else {
                throw .invalidField("\(field).shape", reason: "\(shape) must have 1-8 positive dimensions")
            }
            var count = 1
            for dim in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: Int(dim))
                guard !overflow, product <= limits.maxTensorValues else {
                    throw .tooLarge("\(field).shape", size: overflow ? Int.max : product, limit: limits.maxTensorValues)
                }
                count = product
            }
            guard bytes.count == count * 4, let data = bytes.baseAddress else {
                throw .tensorSize(field, shape: shape, bytes: bytes.count)
            }
            // Copied and checked in one pass (the length was checked above, so this never returns nil).
            guard let (values, bad) = [Float].copying(littleEndian: UnsafeRawBufferPointer(start: data, count: count * 4),
                                                      count: count, checking: .greatestFiniteMagnitude) else {
                throw .tensorSize(field, shape: shape, bytes: bytes.count)
            }
            if let bad { throw .nonFinite(field, index: bad) }
            return ParameterVector(values)
        }

        func numericsPolicy(_ p: Metatrain__V1__NumericsPolicy, _ field: String) throws(WireError) -> NumericsPolicy {
            switch p {
            case METATRAIN__V1__NUMERICS_POLICY__NUMERICS_STRICT: return .strict
            case METATRAIN__V1__NUMERICS_POLICY__NUMERICS_PORTABLE: return .portable
            case METATRAIN__V1__NUMERICS_POLICY__NUMERICS_ANY: return .any
            default: throw .unknownEnum(field, value: Int64(p.rawValue))
            }
        }

        /// 16 lowercase hex digits, as `NumericsFingerprint` writes them.
        func fingerprint(_ p: UnsafeMutablePointer<CChar>?, _ field: String) throws(WireError) -> String {
            let s = try string(p, field)
            guard s.utf8.count == 16, s.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
                throw .invalidField(field, reason: "'\(s.prefix(32))' is not 16 hex digits")
            }
            return s
        }

        /// A run's fingerprint as a checkpoint keeps it: 16 hex digits, then for a gymnasium run "+env " and the
        /// environment servers' identity (at most 512 bytes: `NumericsReport.effective(under:environment:)`).
        func runFingerprint(_ p: UnsafeMutablePointer<CChar>?, _ field: String) throws(WireError) -> String {
            let s = try string(p, field, limit: 16 + 5 + 512)
            guard let marker = s.range(of: "+env ") else { return try fingerprint(p, field) }
            let hex = String(s[..<marker.lowerBound])
            guard hex.utf8.count == 16, hex.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }),
                  !s[marker.upperBound...].isEmpty else {
                throw .invalidField(field, reason: "'\(s.prefix(40))' is not 16 hex digits and an environment")
            }
            return s
        }

        /// A kernel name this build knows (a worker of another build may know others: shown, not used).
        func kernelName(_ p: UnsafeMutablePointer<CChar>?, _ field: String) throws(WireError) -> String {
            try token(p, field, maxBytes: 32) { "'\($0.prefix(32))' is not a kernel name" }
        }

        func algorithm(_ a: Metatrain__V1__Algorithm, _ field: String) throws(WireError) -> MetaAlgorithm {
            switch a {
            case METATRAIN__V1__ALGORITHM__ALGORITHM_REPTILE: return .reptile
            case METATRAIN__V1__ALGORITHM__ALGORITHM_FOMAML: return .fomaml
            case METATRAIN__V1__ALGORITHM__ALGORITHM_MAML: return .maml
            case METATRAIN__V1__ALGORITHM__ALGORITHM_DISTILL: return .distill
            case METATRAIN__V1__ALGORITHM__ALGORITHM_ES_MAML: return .esMAML
            default: throw .unknownEnum(field, value: Int64(a.rawValue))
            }
        }

        func finite(_ x: Double, _ field: String) throws(WireError) -> Double {
            guard x.isFinite else { throw .invalidField(field, reason: "\(x) is not finite") }
            return x
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
