import CProtobufC
import Foundation

/// malloc'd memory for the C structs of one message being packed, freed all at once.
///
/// protobuf-c messages are trees of raw pointers; building one from Swift values needs storage that
/// outlives nested closures, so every allocation of one encode goes here and dies with it.
final class Arena {
    private var blocks: [UnsafeMutableRawPointer] = []

    deinit { for b in blocks { free(b) } }

    /// A zero-filled T, initialised by protobuf-c's `*__init` function.
    func message<T>(_ initialise: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
        let p = calloc(1, MemoryLayout<T>.stride)!
        blocks.append(p)
        let typed = p.bindMemory(to: T.self, capacity: 1)
        initialise(typed)
        return typed
    }

    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        let p = strdup(s)!
        blocks.append(UnsafeMutableRawPointer(p))
        return p
    }

    func array<T>(_ values: [T]) -> UnsafeMutablePointer<T>? {
        guard !values.isEmpty else { return nil }
        let p = malloc(MemoryLayout<T>.stride * values.count)!
        blocks.append(p)
        let typed = p.bindMemory(to: T.self, capacity: values.count)
        for (i, v) in values.enumerated() { typed[i] = v }
        return typed
    }

    /// Little-endian float32 bytes of `values`.
    func floatBytes(_ values: [Float]) -> ProtobufCBinaryData {
        let count = values.count * 4
        guard count > 0 else { return ProtobufCBinaryData(len: 0, data: nil) }
        let p = malloc(count)!
        blocks.append(p)
        #if _endian(little)
        values.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: count) }
        #else
        for (i, v) in values.enumerated() { p.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self) }
        #endif
        return ProtobufCBinaryData(len: count, data: p.assumingMemoryBound(to: UInt8.self))
    }
}
