import CProtobufC
import MetaTrainProto
import NeuralNet

/// A message's large tensor encoded once, for every message that carries the same values: θ of one version to
/// every worker that needs it, one eval θ to every job that adapts it.
///
/// Such a message travels as two frames: a head (the envelope with every other field) and these bytes, the
/// tensor's field (tag, length, Tensor). Protobuf fields may come in any order, so head ‖ field is the whole
/// message; the head's length prefix counts the field's bytes. The coordinator sends the field as one ZeroMQ
/// message copied by reference count (`ZMQSharedFrame`), so a version costs one encoding, not one per worker.
public struct SharedTensorField: Sendable {
    /// Which message's tensor field the bytes fill.
    public enum Carrier: Sendable, Equatable {
        /// `Assignment.parameters` (field 10).
        case assignment
        /// `EvalJob.initial` (field 11).
        case evalJob

        var fieldNumber: UInt64 { self == .assignment ? 10 : 11 }
        var envelopeField: UInt64 { self == .assignment ? 5 : 10 }
    }

    public let carrier: Carrier
    /// The field as it goes on the wire: tag, length, packed Tensor.
    public let bytes: [UInt8]
    /// The values it holds.
    public let count: Int

    public init(_ values: ParameterVector, for carrier: Carrier) {
        let arena = Arena()
        // Packed from θ's own memory (`Arena.lending`), straight into the field's bytes after its tag and length.
        bytes = arena.lending(values.values) {
            let tensor = WireCodec.encodeTensor(values.values, arena)
            let size = metatrain__v1__tensor__get_packed_size(tensor)
            var writer = ProtoWriter()
            writer.lengthDelimitedHeader(carrier.fieldNumber, count: size)
            let header = writer.bytes
            return [UInt8](unsafeUninitializedCapacity: header.count + size) { buffer, initialised in
                _ = buffer.initialize(fromContentsOf: header)
                initialised = header.count + metatrain__v1__tensor__pack(tensor, buffer.baseAddress! + header.count)
            }
        }
        self.carrier = carrier
        count = values.count
    }
}

extension WireCodec {
    /// The head frame of `message`, an assignment or eval job whose tensor (the assignment's θ, the job's initial
    /// parameters) travels as `shared`; `message`'s own tensor is not encoded (the caller sees to it that `shared`
    /// holds the same values).
    public static func encodeHead(_ message: Message, shared: SharedTensorField, version: UInt32 = protocolVersion) -> [UInt8] {
        encodeHead(message, carrier: shared.carrier, fieldBytes: shared.bytes.count, version: version)
    }

    /// `encodeHead(_:shared:)` for a field the caller holds elsewhere (as a ZeroMQ frame): its carrier and size.
    public static func encodeHead(_ message: Message, carrier: SharedTensorField.Carrier, fieldBytes: Int,
                                  version: UInt32 = protocolVersion) -> [UInt8] {
        let arena = Arena()
        let envelope = envelope(message, version: version, arena, omitTensor: true)
        var body: [UInt8]
        switch (message, carrier) {
        case (.assignment, .assignment):
            body = [UInt8](repeating: 0, count: metatrain__v1__assignment__get_packed_size(envelope.pointee.assignment))
            _ = body.withUnsafeMutableBufferPointer { metatrain__v1__assignment__pack(envelope.pointee.assignment, $0.baseAddress) }
        case (.evalJob, .evalJob):
            body = [UInt8](repeating: 0, count: metatrain__v1__eval_job__get_packed_size(envelope.pointee.eval_job))
            _ = body.withUnsafeMutableBufferPointer { metatrain__v1__eval_job__pack(envelope.pointee.eval_job, $0.baseAddress) }
        default:
            preconditionFailure("a \(message.kind) does not carry the tensor of \(carrier)")
        }
        var writer = ProtoWriter()
        writer.varint(1, UInt64(version))
        writer.lengthDelimitedHeader(carrier.envelopeField, count: body.count + fieldBytes)
        return writer.bytes + body
    }

    /// Decodes a message of one frame, or of a head and its shared tensor field (`encodeHead`).
    public static func decode(frames: [[UInt8]], limits: WireLimits = WireLimits()) throws(WireError) -> Message {
        switch frames.count {
        case 1: return try decode(frames[0], limits: limits)
        case 2:
            return try frames[0].withUnsafeBytes { head in
                frames[1].withUnsafeBytes { field in
                    Result { () throws(WireError) in try decode(head: head, field: field, limits: limits) }
                }
            }.get()
        default: throw .invalidField("frames", reason: "a message is one frame, or a head and its tensor: got \(frames.count)")
        }
    }

    /// Decodes a head and its shared tensor field where the caller holds them (a worker's two received frames,
    /// read where libzmq put them): the message that head ‖ field is.
    ///
    /// Why: joined, the two frames are one envelope, but joining copies θ (4 MB at 1M floats), and protobuf-c
    /// copies a `bytes` field again before the checked copy into floats; three passes over θ per assignment were
    /// the largest part of a worker's CPU at θ 1M × 64 workers (perf: memmove). Here the tensor is read from the
    /// field frame once, checked as it is copied, and only the small head goes through protobuf-c. A pair not laid
    /// out as `encodeHead` and `SharedTensorField` write it (another protocol version, a tensor in the head too,
    /// fields the layout does not have) is decoded joined, as before, so the result is the same either way.
    public static func decode(head: UnsafeRawBufferPointer, field: UnsafeRawBufferPointer,
                              limits: WireLimits = WireLimits()) throws(WireError) -> Message {
        if let message = try decodeInPlace(head: head, field: field, limits: limits) { return message }
        var joined = [UInt8](head)
        joined.append(contentsOf: field)
        return try decode(joined, limits: limits)
    }

    /// `decode(head:field:)` without the joined copy, or nil where the pair is not in the shared layout.
    static func decodeInPlace(head: UnsafeRawBufferPointer, field: UnsafeRawBufferPointer,
                              limits: WireLimits) throws(WireError) -> Message? {
        // The head: protocol_version (field 1), then the body's tag and a length that counts the field's bytes too.
        var h = ProtoReader(head)
        guard h.key() == 1 << 3, let version = h.varint(), version == UInt64(protocolVersion), let bodyKey = h.key(),
              bodyKey & 7 == 2, let length = h.varint(), length == UInt64(h.remaining + field.count) else { return nil }
        let carrier: SharedTensorField.Carrier
        switch bodyKey >> 3 {
        case SharedTensorField.Carrier.assignment.envelopeField: carrier = .assignment
        case SharedTensorField.Carrier.evalJob.envelopeField: carrier = .evalJob
        default: return nil
        }
        let body = UnsafeRawBufferPointer(rebasing: head[h.offset...])
        // The field: the carrier's tag, a length that is the rest of the frame, then a Tensor (shape, data).
        var f = ProtoReader(field)
        guard f.key() == carrier.fieldNumber << 3 | 2, let tensorLength = f.varint(), tensorLength == UInt64(f.remaining),
              let (shape, data) = f.tensor() else { return nil }

        // The head alone, its length prefix now the body's own.
        var writer = ProtoWriter()
        writer.varint(1, version)
        writer.lengthDelimitedHeader(carrier.envelopeField, count: body.count)
        var reframed = writer.bytes
        reframed.append(contentsOf: body)
        let unpacked = reframed.withUnsafeBufferPointer { metatrain__v1__envelope__unpack(nil, $0.count, $0.baseAddress) }
        guard let envelope = unpacked else { return nil }
        defer { metatrain__v1__envelope__free_unpacked(envelope, nil) }
        let d = Decoder(limits: limits)
        switch carrier {
        case .assignment:
            // A head with a tensor of its own would merge with the field's: left to protobuf-c, joined.
            guard let a = envelope.pointee.assignment, a.pointee.parameters == nil else { return nil }
            let parameters = try d.tensor(shape: shape, data: data, "assignment.parameters")
            return .assignment(try d.assignment(a.pointee, shared: parameters))
        case .evalJob:
            guard let j = envelope.pointee.eval_job, j.pointee.initial == nil, j.pointee.initial_index == 0 else { return nil }
            let initial = try d.tensor(shape: shape, data: data, "eval_job.initial")
            let (key, job) = try d.evalJob(j.pointee, "eval_job", parameters: [initial])
            return .evalJob(EvalJobMessage(key: key, job: job))
        }
    }
}

/// Reads the protobuf fields of a shared tensor pair in place: varints, keys, and a Tensor's shape and data.
///
/// Every read returns nil where the bytes are not what it reads (truncated, a varint over 10 bytes), so the caller
/// can leave anything unusual to protobuf-c.
struct ProtoReader {
    let bytes: UnsafeRawBufferPointer
    private(set) var offset = 0

    init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    mutating func varint() -> UInt64? {
        var value: UInt64 = 0
        for shift in stride(from: UInt64(0), to: 70, by: 7) {
            guard offset < bytes.count else { return nil }
            let byte = bytes[offset]
            offset += 1
            if shift == 63 && byte > 1 { return nil }  // more than 64 bits
            value |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return value }
        }
        return nil
    }

    /// A field's key (number << 3 | wire type).
    mutating func key() -> UInt64? { varint() }

    /// `count` bytes from here, or nil if fewer remain.
    mutating func take(_ count: UInt64) -> UnsafeRawBufferPointer? {
        guard count <= UInt64(remaining) else { return nil }
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + Int(count)])
        offset += Int(count)
        return slice
    }

    /// The rest of the bytes as a Tensor (`repeated uint32 shape = 1; bytes data = 2`): the shape's values from
    /// every shape entry in order (packed or not, as protobuf reads them) and the one data field; nil for any other
    /// field, a second data field or a shape value over 32 bits.
    mutating func tensor() -> (shape: [UInt32], data: UnsafeRawBufferPointer)? {
        var shape: [UInt32] = []
        var data: UnsafeRawBufferPointer?
        while remaining > 0 {
            guard let key = key() else { return nil }
            switch key {
            case 1 << 3:  // one shape value
                guard let v = varint(), let dim = UInt32(exactly: v) else { return nil }
                shape.append(dim)
            case 1 << 3 | 2:  // packed shape values
                guard let length = varint(), let packed = take(length) else { return nil }
                var values = ProtoReader(packed)
                while values.remaining > 0 {
                    guard let v = values.varint(), let dim = UInt32(exactly: v) else { return nil }
                    shape.append(dim)
                }
            case 2 << 3 | 2:
                guard data == nil, let length = varint(), let bytes = take(length) else { return nil }
                data = bytes
            default:
                return nil
            }
        }
        guard let data else { return nil }
        return (shape, data)
    }
}
