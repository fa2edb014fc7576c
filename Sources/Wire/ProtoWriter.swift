/// Protobuf encoding of single fields, for the formats whose .proto files are not compiled into this project
/// (ONNX for `metatrain export`, TensorBoard's Event): each caller writes its few fields by their numbers.
public struct ProtoWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    private mutating func raw(_ value: UInt64) {
        var v = value
        while v >= 0x80 { bytes.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }

    public mutating func varint(_ field: UInt64, _ value: UInt64) { raw(field << 3); raw(value) }
    public mutating func double(_ field: UInt64, _ value: Double) {
        raw(field << 3 | 1)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init)
    }
    public mutating func float(_ field: UInt64, _ value: Float) {
        raw(field << 3 | 5)
        bytes += withUnsafeBytes(of: value.bitPattern.littleEndian, Array.init)
    }
    /// The tag and length of a length-delimited field whose `count` bytes the caller appends (or sends) itself.
    public mutating func lengthDelimitedHeader(_ field: UInt64, count: Int) { raw(field << 3 | 2); raw(UInt64(count)) }
    public mutating func bytes(_ field: UInt64, _ value: [UInt8]) { raw(field << 3 | 2); raw(UInt64(value.count)); bytes += value }
    public mutating func string(_ field: UInt64, _ value: String) { bytes(field, Array(value.utf8)) }
    public mutating func message(_ field: UInt64, _ value: ProtoWriter) { bytes(field, value.bytes) }
}
