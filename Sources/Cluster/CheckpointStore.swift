import ClusterCore
import Crypto
import Foundation
import MetaLearning
import NeuralNet
import Wire

/// Why a checkpoint could not be written or used.
public enum CheckpointError: Error, Equatable, CustomStringConvertible {
    case io(path: String, reason: String)
    case badMagic(path: String)
    case truncated(path: String, expected: Int, got: Int)
    case checksumMismatch(path: String)
    case undecodable(path: String, reason: String)
    case wrongConfig(path: String, checkpointHash: String, configHash: String)
    case noValidCheckpoint(directory: String, problems: [String])

    public var description: String {
        switch self {
        case let .io(p, r): return "checkpoint \(p): \(r)"
        case .badMagic(let p): return "checkpoint \(p): not a metatrain checkpoint (bad magic bytes)"
        case let .truncated(p, e, g): return "checkpoint \(p): truncated (needs \(e) bytes, has \(g))"
        case .checksumMismatch(let p): return "checkpoint \(p): SHA-256 does not match its contents (corrupted)"
        case let .undecodable(p, r): return "checkpoint \(p): \(r)"
        case let .wrongConfig(p, c, h):
            return "checkpoint \(p) was written with config hash \(c.prefix(12))…, this config hashes to \(h.prefix(12))… (pass --force-config to resume anyway)"
        case let .noValidCheckpoint(d, problems):
            return "no valid checkpoint in \(d)" + (problems.isEmpty ? "" : ":\n  " + problems.joined(separator: "\n  "))
        }
    }
}

/// Crash-consistent checkpoint files (DESIGN.md invariant 6) in RUN_DIR/checkpoints.
///
/// File layout: 8 magic bytes, the payload length (UInt64 little-endian), the protobuf payload
/// (`CheckpointRecord`), and the SHA-256 of the payload. Writes go to a temporary file that is
/// fsynced, renamed over the final name, and the folder fsynced; the newest `keepLast` are kept.
public struct CheckpointStore {
    public static let magic: [UInt8] = Array("MTCKPT\u{0}\u{1}".utf8)
    public let directory: String
    public let keepLast: Int

    public init(runDirectory: String, keepLast: Int) {
        directory = RunFolder(runDirectory).checkpoints
        self.keepLast = keepLast
    }

    public func path(iteration: Int) -> String {
        (directory as NSString).appendingPathComponent(String(format: "ckpt-%08d.mtck", iteration))
    }

    /// The framed bytes of a checkpoint file.
    public static func frame(_ payload: [UInt8]) -> [UInt8] {
        var bytes = magic
        withUnsafeBytes(of: UInt64(payload.count).littleEndian) { bytes += $0 }
        bytes += payload
        bytes += Array(SHA256.hash(data: payload))
        return bytes
    }

    /// Writes `record` durably and prunes old checkpoints; returns the file's path.
    @discardableResult
    public func write(_ record: CheckpointRecord) throws -> String {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let final = path(iteration: record.state.iteration)
        let temporary = final + ".tmp-\(getpid())"
        let bytes = Self.frame(CheckpointCodec.encode(record))
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw CheckpointError.io(path: temporary, reason: String(cString: strerror(errno))) }
        var written = 0
        let ok = bytes.withUnsafeBytes { raw -> Bool in
            while written < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 { if errno == EINTR { continue }; return false }
                written += n
            }
            return fsync(fd) == 0
        }
        let failure = String(cString: strerror(errno))
        close(fd)
        guard ok else {
            unlink(temporary)
            throw CheckpointError.io(path: temporary, reason: failure)
        }
        guard rename(temporary, final) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw CheckpointError.io(path: final, reason: "rename failed: \(reason)")
        }
        let dirfd = open(directory, O_RDONLY | O_DIRECTORY)
        if dirfd >= 0 { fsync(dirfd); close(dirfd) }
        prune()
        return final
    }

    /// Checkpoint files, newest iteration first.
    public func files() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix("ckpt-") && $0.hasSuffix(".mtck") }.sorted(by: >)
            .map { (directory as NSString).appendingPathComponent($0) }
    }

    private func prune() {
        for old in files().dropFirst(keepLast) { unlink(old) }
        // Leftover temporaries of crashed writes.
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where name.contains(".mtck.tmp-") && !name.hasSuffix("-\(getpid())") {
            unlink((directory as NSString).appendingPathComponent(name))
        }
    }

    /// Reads and verifies one file: magic, length, checksum, then the payload's own validation.
    public static func read(path: String, settings: MetaSettings?) throws -> CheckpointRecord {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CheckpointError.io(path: path, reason: "cannot read")
        }
        let bytes = [UInt8](data)
        guard bytes.count >= 16 else { throw CheckpointError.truncated(path: path, expected: 16, got: bytes.count) }
        guard Array(bytes[0..<8]) == magic else { throw CheckpointError.badMagic(path: path) }
        let length = bytes[8..<16].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard length <= UInt64(bytes.count) else {
            throw CheckpointError.truncated(path: path, expected: Int(clamping: length) + 48, got: bytes.count)
        }
        let total = 16 + Int(length) + 32
        guard bytes.count == total else { throw CheckpointError.truncated(path: path, expected: total, got: bytes.count) }
        let payload = Array(bytes[16..<(16 + Int(length))])
        guard Array(SHA256.hash(data: payload)) == Array(bytes[(16 + Int(length))...]) else {
            throw CheckpointError.checksumMismatch(path: path)
        }
        do { return try CheckpointCodec.decode(payload, settings: settings) } catch {
            throw CheckpointError.undecodable(path: path, reason: "\(error)")
        }
    }

    /// The newest checkpoint that verifies, belongs to `runID` and matches `configHash` (each unless nil),
    /// with a reason for every newer one skipped.
    ///
    /// A corrupt file, or one from another run, is skipped in favour of the previous good one. If files
    /// verify but none matches the configuration, the configuration changed: that is refused
    /// (`wrongConfig`) rather than silently resuming something else.
    public func newestValid(settings: MetaSettings?, configHash: String?, runID: String? = nil)
        throws -> (path: String, record: CheckpointRecord, skipped: [String]) {
        var problems: [String] = []
        var configMismatch: CheckpointError?
        for file in files() {
            let record: CheckpointRecord
            do { record = try Self.read(path: file, settings: settings) } catch {
                problems.append("\(error)")
                continue
            }
            if let runID, record.runID != runID {
                problems.append("checkpoint \(file) belongs to run \(record.runID), this folder holds run \(runID)")
                continue
            }
            if let configHash, record.configHash != configHash {
                let mismatch = CheckpointError.wrongConfig(path: file, checkpointHash: record.configHash, configHash: configHash)
                configMismatch = configMismatch ?? mismatch
                problems.append("\(mismatch)")
                continue
            }
            return (file, record, problems)
        }
        if let configMismatch { throw configMismatch }
        throw CheckpointError.noValidCheckpoint(directory: directory, problems: problems)
    }

    /// The run id recorded in the run folder when the run started (RUN_DIR/run.id), if any.
    public static func recordedRunID(runDirectory: String) -> String? {
        let path = RunFolder(runDirectory).runID
        return (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public static func recordRunID(_ runID: String, runDirectory: String) throws {
        let path = RunFolder(runDirectory).runID
        try Data((runID + "\n").utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

/// SHA-256 of θ's little-endian float32 bytes: the figure determinism tests compare.
public func parametersSHA256(_ theta: ParameterVector) -> String {
    SHA256.hash(data: theta.values.littleEndianBytes).map { String(format: "%02x", $0) }.joined()
}
