import CProtobufC
import MetaTrainProto
import Foundation

/// A protobuf-c allocator that refuses to allocate more, in all, than a budget proportional to the bytes unpacked.
///
/// Why: protobuf-c sizes a repeated field's array from the bytes before checking anything, so a 256 MiB frame of
/// packed one-byte shape values becomes a 1 GiB `uint32_t` array before any of our checks sees the message (issue 39,
/// defect 8). Every message this side writes unpacks to about its own size (tensors are `bytes`, copied once; the
/// structs of a few hundred small fields fit in the slack), so twice the size and a mebibyte refuses only messages
/// built to amplify. protobuf-c checks every allocation and fails the unpack cleanly when one is refused.
struct UnpackBudget {
    /// Bytes a message of `size` bytes may make protobuf-c allocate.
    static func limit(forMessageOf size: Int) -> Int { 2 * size + (1 << 20) }

    final class State {
        var remaining: Int
        /// The first allocation refused (its size), if any.
        var refused: Int?
        init(_ limit: Int) { remaining = limit }
    }

    /// Runs `body` with an allocator holding protobuf-c to `limit` bytes, and returns what it returns with the size of
    /// a refused allocation (nil: none was). `body` must free what it unpacks with the same allocator, inside the call.
    static func withAllocator<R>(limit: Int, _ body: (UnsafeMutablePointer<ProtobufCAllocator>) throws -> R) rethrows -> (R, refused: Int?) {
        let state = State(limit)
        let data = Unmanaged.passUnretained(state).toOpaque()
        var allocator = ProtobufCAllocator(
            alloc: { data, size in
                let state = Unmanaged<UnpackBudget.State>.fromOpaque(data!).takeUnretainedValue()
                guard size <= state.remaining else {
                    if state.refused == nil { state.refused = size }
                    return nil
                }
                state.remaining -= size
                return malloc(max(size, 1))
            },
            free: { _, pointer in free(pointer) },
            allocator_data: data)
        let result = try withExtendedLifetime(state) { try body(&allocator) }
        return (result, state.refused)
    }
}

extension WireCodec {
    /// Unpacks an envelope with protobuf-c under `UnpackBudget`, hands it to `body` (nil: the bytes are not an
    /// envelope) and frees it; a message that would make protobuf-c allocate past the budget is `tooLarge`.
    static func withEnvelope<R>(_ bytes: UnsafeRawBufferPointer,
                                _ body: (UnsafeMutablePointer<Metatrain__V1__Envelope>?) throws(WireError) -> R) throws(WireError) -> R {
        let limit = UnpackBudget.limit(forMessageOf: bytes.count)
        let (result, refused) = UnpackBudget.withAllocator(limit: limit) { allocator -> Result<R, WireError> in
            let envelope = metatrain__v1__envelope__unpack(allocator, bytes.count, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
            defer { if let envelope { metatrain__v1__envelope__free_unpacked(envelope, allocator) } }
            return Result { () throws(WireError) in try body(envelope) }
        }
        if let refused { throw .tooLarge("message (memory to decode it)", size: refused, limit: limit) }
        return try result.get()
    }
}
