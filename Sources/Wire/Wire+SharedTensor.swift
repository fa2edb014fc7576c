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
}
