import ClusterCore
import Foundation
import Wire

/// Writes scalars as TensorBoard event files: TFRecord-framed `Event` protobufs with masked CRC32C checksums.
///
/// One file per coordinator process (`RUN_DIR/tensorboard/events.out.tfevents.<time>.<host>.<pid>`), so a resumed
/// run adds a file and TensorBoard charts every incarnation's steps together. The `Event` and `Summary` messages
/// are written field by field (wall_time 1, step 2, file_version 3, summary 5; Summary.value 1; Value.tag 1,
/// simple_value 2), as TensorBoard's event.proto and summary.proto number them. Thread-safe: the run loop and the
/// meta-evaluation thread both write.
public final class TensorBoardWriter: @unchecked Sendable {
    public let path: String
    private let handle: FileHandle
    private let lock = NSLock()

    /// Creates the file and writes the version event TensorBoard expects first; a resumed run (`restartStep`: the first
    /// step it will write) also writes a SessionLog START there, so TensorBoard drops the steps from that one on that an
    /// earlier incarnation wrote after its last checkpoint (they would chart twice).
    public init(directory: String, restartStep: Int? = nil) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let stamp = Int(Date().timeIntervalSince1970)
        path = (directory as NSString).appendingPathComponent(
            "events.out.tfevents.\(stamp).\(ProcessInfo.processInfo.hostName).\(getpid())")
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
        }
        handle = h
        var event = ProtoWriter()
        event.double(1, Date().timeIntervalSince1970)
        event.string(3, "brain.Event:2")
        try write(record: event.bytes)
        if let restartStep {
            var sessionLog = ProtoWriter()
            sessionLog.varint(1, 1)                       // SessionLog.status = START
            var restart = ProtoWriter()
            restart.double(1, Date().timeIntervalSince1970)
            restart.varint(2, UInt64(bitPattern: Int64(restartStep)))
            restart.message(7, sessionLog)                // Event.session_log
            try write(record: restart.bytes)
        }
    }

    deinit { try? handle.close() }

    /// Appends one event holding `scalars` (tag → value) at `step`.
    public func add(step: Int, scalars: [(String, Double)]) throws {
        var summary = ProtoWriter()
        for (tag, value) in scalars where value.isFinite {
            var v = ProtoWriter()
            v.string(1, tag)
            v.float(2, Float(value))
            summary.message(1, v)
        }
        var event = ProtoWriter()
        event.double(1, Date().timeIntervalSince1970)
        event.varint(2, UInt64(bitPattern: Int64(step)))
        event.message(5, summary)
        try write(record: event.bytes)
    }

    /// TFRecord framing: length (u64 LE), masked CRC32C of the length, data, masked CRC32C of the data.
    private func write(record data: [UInt8]) throws {
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian, Array.init)
        var out = length
        out += withUnsafeBytes(of: CRC32C.masked(length).littleEndian, Array.init)
        out += data
        out += withUnsafeBytes(of: CRC32C.masked(data).littleEndian, Array.init)
        lock.lock()
        defer { lock.unlock() }
        // No fsync per event: this runs in the coordinator's loop once an iteration, and a reader sees the write at
        // once; a crash loses at most the last events, which metrics.jsonl also holds.
        try handle.write(contentsOf: out)
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord frames use it.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TFRecord's masking: rotate right by 15 and add a constant.
    static func masked(_ bytes: [UInt8]) -> UInt32 {
        let crc = checksum(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
