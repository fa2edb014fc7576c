import CProtobufC
import Foundation

/// malloc'd memory for the C structs of one message being packed, freed all at once.
///
/// protobuf-c messages are trees of raw pointers; building one from Swift values needs storage that
/// outlives nested closures, so every allocation of one encode goes here and dies with it.
final class Arena {
    private var blocks: [UnsafeMutableRawPointer] = []
    /// Float vectors whose own memory protobuf-c reads while this arena packs (`lending`): their bytes by address.
    private var lent: [UnsafeRawPointer: Int] = [:]

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

    /// Runs `body` with `values`' memory lent to this arena: while it runs, `floatBytes(values)` points protobuf-c at
    /// that memory instead of copying it. Pack inside `body`; nothing of it may outlive the call.
    ///
    /// Why: a result's update (4 MB at θ of 1M floats) was copied into the arena and then packed, two passes over it
    /// before the socket; lent, it is read once, by the pack. The same for θ's shared field, once per version.
    func lending<R>(_ values: [Float], _ body: () -> R) -> R {
        #if _endian(little)
        return values.withUnsafeBytes { raw in
            guard let base = raw.baseAddress, raw.count > 0 else { return body() }  // nothing lent: most messages
            lent[base] = raw.count
            defer { lent[base] = nil }
            return body()
        }
        #else
        return body()
        #endif
    }

    /// Little-endian float32 bytes of `values`: its own memory where it is lent (`lending`), else a copy.
    func floatBytes(_ values: [Float]) -> ProtobufCBinaryData {
        let count = values.count * 4
        guard count > 0 else { return ProtobufCBinaryData(len: 0, data: nil) }
        #if _endian(little)
        // The same storage the lender holds (an unmodified copy of an array shares it): valid until `lending` returns.
        if let base = values.withUnsafeBytes({ raw in raw.baseAddress.flatMap { lent[$0] == count ? $0 : nil } }) {
            return ProtobufCBinaryData(len: count, data: UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: UInt8.self)))
        }
        #endif
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
