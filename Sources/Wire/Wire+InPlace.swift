import CProtobufC
import MetaTrainProto
import NeuralNet

/// Decoding a message's one large tensor where the caller holds its bytes: a worker's head and θ frame, the
/// coordinator's results. The tensor is read from the received bytes once, checked as it is copied; the rest of the
/// message, small, goes through protobuf-c. A message not laid out the way this side writes it is decoded whole, as
/// before, so the result is the same either way (`WireCodecTests` changes every byte of such messages and compares).
extension WireCodec {
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
        return try reframed.withUnsafeBytes { head in
            Result { () throws(WireError) -> Message? in
                try withEnvelope(head) { (unpacked) throws(WireError) -> Message? in
                    guard let envelope = unpacked else { return nil }
                    return try decodeHead(envelope, carrier: carrier, shape: shape, data: data, limits: limits)
                }
            }
        }.get()
    }

    /// The message a head of `carrier`'s kind and its shared tensor make; nil where the head holds a tensor itself.
    static func decodeHead(_ envelope: UnsafeMutablePointer<Metatrain__V1__Envelope>, carrier: SharedTensorField.Carrier,
                           shape: [UInt32], data: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Message? {
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

    /// A result decoded with its update read where `bytes` holds it, or nil where the envelope is not one result
    /// with one update field (then `decode` unpacks it whole).
    ///
    /// Why: protobuf-c copies a `bytes` field before the checked copy into floats; at θ of 1M floats that copy was a
    /// quarter of the coordinator's loop thread (perf, 8 instant workers), and the loop is what limits it there.
    static func decodeResultInPlace(_ bytes: UnsafeRawBufferPointer, limits: WireLimits) throws(WireError) -> Message? {
        var r = ProtoReader(bytes)
        guard r.key() == 1 << 3, let version = r.varint(), version == UInt64(protocolVersion),
              r.key() == 6 << 3 | 2, let length = r.varint(), length == UInt64(r.remaining) else { return nil }
        let body = r.offset
        // The Result's fields: exactly one update (field 6), every other field skipped by its wire type.
        var update: (start: Int, end: Int, shape: [UInt32], data: UnsafeRawBufferPointer)?
        while r.remaining > 0 {
            let start = r.offset
            guard let key = r.key() else { return nil }
            if key >> 3 == 6 {
                guard key & 7 == 2, update == nil, let size = r.varint(), let tensor = r.take(size) else { return nil }
                var t = ProtoReader(tensor)
                guard let (shape, data) = t.tensor() else { return nil }
                update = (start, r.offset, shape, data)
            } else if !r.skip(wireType: key & 7) {
                return nil
            }
        }
        guard let update else { return nil }
        // The envelope without the update field: the bytes before it and after it, the length prefix shortened.
        var writer = ProtoWriter()
        writer.varint(1, version)
        writer.lengthDelimitedHeader(6, count: bytes.count - body - (update.end - update.start))
        var rest = writer.bytes
        rest.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[body..<update.start]))
        rest.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[update.end...]))
        return try rest.withUnsafeBytes { head in
            Result { () throws(WireError) -> Message? in
                try withEnvelope(head) { (unpacked) throws(WireError) -> Message? in
                    guard let envelope = unpacked, let m = envelope.pointee.result, m.pointee.update == nil else { return nil }
                    let d = Decoder(limits: limits)
                    let values = try d.tensor(shape: update.shape, data: update.data, "result.update")
                    return .result(try d.result(m.pointee, shared: values))
                }
            }
        }.get()
    }
}

/// Reads protobuf fields in place: varints, keys, skipped fields, and a Tensor's shape and data.
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

    /// Moves past a field's value of `wireType` (varint, 64-bit, length-delimited, 32-bit); false for a group or
    /// an unknown wire type, or bytes that end inside the value.
    mutating func skip(wireType: UInt64) -> Bool {
        switch wireType {
        case 0: return varint() != nil
        case 1: return take(8) != nil
        case 2: guard let length = varint() else { return false }; return take(length) != nil
        case 5: return take(4) != nil
        default: return false
        }
    }

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
    /// Shape values kept before a tensor is handed to protobuf-c instead (whose budget and checks refuse it): one more
    /// than the 8 dimensions a tensor may have, so a long shape is never held (issue 39, defect 8).
    static let maxShapeKept = 9

    mutating func tensor() -> (shape: [UInt32], data: UnsafeRawBufferPointer)? {
        var shape: [UInt32] = []
        var data: UnsafeRawBufferPointer?
        while remaining > 0 {
            guard let key = key() else { return nil }
            switch key {
            case 1 << 3:  // one shape value
                guard shape.count <= Self.maxShapeKept, let v = varint(), let dim = UInt32(exactly: v) else { return nil }
                shape.append(dim)
            case 1 << 3 | 2:  // packed shape values
                guard let length = varint(), let packed = take(length) else { return nil }
                var values = ProtoReader(packed)
                while values.remaining > 0 {
                    guard shape.count <= Self.maxShapeKept, let v = values.varint(), let dim = UInt32(exactly: v) else { return nil }
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

extension WireCodec {
    /// The envelope field number of the message's body (`Envelope.body`: 2 hello … 13 status reply), read without
    /// decoding anything: nil where the bytes do not start as this protocol's envelope does. Lets a receiver refuse a
    /// body its sender may not send before paying to decode it.
    public static func bodyField(_ bytes: UnsafeRawBufferPointer) -> UInt64? {
        var r = ProtoReader(bytes)
        guard r.key() == 1 << 3, r.varint() != nil, let key = r.key(), key & 7 == 2 else { return nil }
        return key >> 3
    }

    /// Envelope fields of the bodies only a registered worker sends: a result (6) and an eval outcome (11).
    public static let workerOnlyBodies: Set<UInt64> = [6, 11]
}
