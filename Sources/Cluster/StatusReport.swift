import ClusterCore
import Foundation

/// status.json and a status request's answer: where a run stands, for `metatrain status` and for people.
///
/// Why a Codable value and not a dictionary through JSONSerialization: with sorted keys, JSONSerialization compares
/// every pair of keys under a locale it creates for each comparison, and the coordinator wrote this file at every
/// meta-iteration — at 64 workers that writing was over half of the coordinator's loop (perf, docs/SCALING.md
/// "status.json"). JSONEncoder writes the same object, keys sorted, about 20× faster.
struct StatusReport: Encodable {
    struct Worker: Encodable {
        let id: String, host: String, threads: Int, busy: Int, slotsDone: Int, suspected: Bool
        let lastHeardMsAgo: Int64, envSteps: UInt64
    }
    struct Checkpoint: Encodable { let iteration: Int, unixMs: UInt64 }
    struct MetaEval: Encodable { let iteration: Int, returnBefore: Double, returnAfter: Double }

    let runId: String, state: String, iteration: Int, iterations: Int, metaBatch: Int
    /// Who writes the file, and how often at least while it runs: a reader tells a dead coordinator from a live one by
    /// the process (on its host) and by the file's age (`metatrain status`).
    let pid: Int32, host: String, refreshSeconds: Double
    let workers: [Worker]
    let updatedUnixMs: UInt64, endpoint: String, paramsSha256: String
    /// nil (left out) until an iteration has been timed.
    let secondsPerIteration: Double?, slotsPerSecond: Double?, etaSeconds: Double?
    let lastCheckpoint: Checkpoint?
    let lastMetaEval: MetaEval?

    /// The JSON, keys sorted (snake case); `pretty` for the file, one line for the socket.
    func json(pretty: Bool) throws -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}
