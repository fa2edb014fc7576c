import Cluster
import Foundation
import Testing
import Wire

/// Scheduler scenarios written as transcripts (etcd-io/raft's testdata style): each file in Scenarios/ is a
/// sequence of events, each followed by the commands the Scheduler must answer with, indented. A scenario
/// reads as a story of the run and fails on any difference, in order. `METATRAIN_REWRITE_TRANSCRIPTS=1`
/// rewrites the files with what the Scheduler says now, for review in the diff.
///
/// Events: `settings KEY=VALUE…` (first line: iterations, batch, heartbeat, liveness, checkpoint, backup
/// (a multiple or off), slot_timeout, min_timeout, stall, serve (1: stay up for eval requests)), then `at MS EVENT`, where EVENT is
/// `hello PEER threads=N`, `heartbeat PEER [steps=N]`, `result PEER IT/SLOT/ATTEMPT [v=VERSION] [run=ID]
/// payload=N`, `failed PEER IT/SLOT/ATTEMPT REASON`, `missing PEER IT/SLOT/ATTEMPT`, `goodbye PEER`,
/// `eval PEER request=N jobs=I,J…`, `outcome PEER REQ/JOB/ATTEMPT` or `tick`. Commands print one per line;
/// debug and info logs are left out (their text is not part of the contract), warnings and errors are kept.
@Suite struct SchedulerTranscriptTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scenarios")

    static var scenarios: [String] { transcripts(in: folder) }

    @Test func scenarioFilesExist() {
        #expect(Self.scenarios.count >= 4, "no transcripts in \(Self.folder.path)")
    }

    @Test(arguments: scenarios) func transcript(_ name: String) throws {
        try Self.check(Self.folder.appendingPathComponent(name), replay: Self.replay)
    }

    /// Replays the transcript at `url` and compares line by line, or rewrites it (`METATRAIN_REWRITE_TRANSCRIPTS=1`);
    /// shared by the Scheduler's and the sessions' transcripts.
    static func check(_ url: URL, replay: (String, String) throws -> String) throws {
        let name = url.lastPathComponent
        let text = try String(contentsOf: url, encoding: .utf8)
        let replayed = try replay(text, name)
        if ProcessInfo.processInfo.environment["METATRAIN_REWRITE_TRANSCRIPTS"] == "1" {
            try Data(replayed.utf8).write(to: url)
            return
        }
        let expected = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let got = replayed.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for (i, (e, g)) in zip(expected, got).enumerated() where e != g {
            Issue.record("\(name):\(i + 1): expected\n  \(e)\ngot\n  \(g)")
            return
        }
        #expect(expected.count == got.count, "\(name): \(expected.count) lines expected, \(got.count) produced")
    }

    /// The transcripts (`.txt`) in `folder`, sorted.
    static func transcripts(in folder: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".txt") }.sorted()
    }

    /// Runs the events of `text` and returns the transcript with the commands as the Scheduler produced them
    /// (comments and event lines kept as written).
    static func replay(_ text: String, name: String) throws -> String {
        var out: [String] = []
        var scheduler: Scheduler<Int>?
        var peers: [String: Peer] = [:]
        var names: [Peer: String] = [:]
        func peer(_ n: String) -> Peer {
            if let p = peers[n] { return p }
            let p = Peer(Array(n.utf8))
            peers[n] = p; names[p] = n
            return p
        }
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw)
            if line.hasPrefix("  ") { continue }   // an expected command: replaced by what the scheduler says
            out.append(line)
            let words = line.split(separator: " ").map(String.init)
            guard let first = words.first, !first.hasPrefix("#") else { continue }
            func fail(_ why: String) -> Error { TranscriptError.bad("\(name):\(number + 1): \(why): \(line)") }
            if first == "settings" {
                scheduler = try Scheduler<Int>(settings: try settings(words.dropFirst(), fail))
                continue
            }
            guard first == "at", words.count >= 3, let now = Tick(words[1]), var s = scheduler else {
                throw fail("expected `settings …` first, then `at MS EVENT`")
            }
            let args = Array(words.dropFirst(3))
            func option(_ key: String) -> String? { args.first { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) } }
            func slotKey(_ s: String) throws -> SlotKey {
                let p = s.split(separator: "/").compactMap { Int($0) }
                guard p.count == 3 else { throw fail("a slot key is ITERATION/SLOT/ATTEMPT") }
                return SlotKey(iteration: p[0], slot: p[1], attempt: p[2])
            }
            let event: SchedulerEvent<Int>
            switch words[2] {
            case "hello":
                event = .hello(peer(args[0]), Hello(host: args[0], cores: 1, threads: Int(option("threads") ?? "1") ?? 1))
            case "heartbeat":
                event = .heartbeat(peer(args[0]), envSteps: option("steps").flatMap { UInt64($0) })
            case "result":
                let key = try slotKey(args[1])
                event = .result(peer(args[0]), runID: option("run") ?? "run-1", key: key,
                                parameterVersion: Int(option("v") ?? "") ?? key.iteration, payload: Int(option("payload") ?? "0") ?? 0)
            case "failed":
                event = .taskFailed(peer(args[0]), try slotKey(args[1]), args.dropFirst(2).joined(separator: " "))
            case "missing":
                event = .parametersMissing(peer(args[0]), try slotKey(args[1]))
            case "goodbye":
                event = .goodbye(peer(args[0]))
            case "eval":
                event = .evalRequest(peer(args[0]), request: Int(option("request") ?? "1") ?? 1,
                                     jobs: (option("jobs") ?? "").split(separator: ",").compactMap { Int($0) })
            case "outcome":
                let p = args[1].split(separator: "/").compactMap { Int($0) }
                guard p.count == 3 else { throw fail("an eval key is REQUEST/JOB/ATTEMPT") }
                event = .evalOutcome(peer(args[0]), EvalKey(request: p[0], job: p[1], attempt: p[2]))
            case "tick":
                event = .tick
            default:
                throw fail("unknown event")
            }
            for command in s.handle(event, now: now) {
                if let text = describe(command, names) { out.append("  " + text) }
            }
            scheduler = s
        }
        return out.joined(separator: "\n")
    }

    static func settings(_ words: ArraySlice<String>, _ fail: (String) -> Error) throws -> SchedulerSettings {
        var values: [String: String] = [:]
        for w in words {
            let kv = w.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw fail("settings take KEY=VALUE") }
            values[kv[0]] = kv[1]
        }
        func int(_ k: String, _ d: Int) -> Int { values[k].flatMap { Int($0) } ?? d }
        var s = SchedulerSettings(runID: "run-1", iterations: int("iterations", 1), metaBatch: int("batch", 2),
                                  heartbeatIntervalMs: int("heartbeat", 100), liveness: int("liveness", 3),
                                  checkpointInterval: int("checkpoint", 1))
        if let b = values["backup"] { s.backupAfterMedianMultiple = b == "off" ? nil : Double(b) }
        if let t = values["slot_timeout"].flatMap({ Int64($0) }) { s.slotTimeoutMs = t }
        if let t = values["min_timeout"].flatMap({ Int64($0) }) { s.minimumTimeoutMs = t }
        if let t = values["stall"].flatMap({ Int64($0) }) { s.minimumStallMs = t }
        s.serve = values["serve"] == "1"
        return s
    }

    /// One command as a transcript line; nil for debug and info logs.
    static func describe(_ c: SchedulerCommand<Int>, _ names: [Peer: String]) -> String? {
        func n(_ p: Peer) -> String { names[p] ?? "\(p)" }
        func k(_ key: SlotKey) -> String { "\(key.iteration)/\(key.slot)/\(key.attempt)" }
        switch c {
        case let .send(p, o):
            switch o {
            case .welcome(let id): return "send \(n(p)) welcome \(id)"
            case .heartbeat: return "send \(n(p)) heartbeat"
            case let .assign(key, withθ): return "send \(n(p)) assign \(k(key))\(withθ ? " +θ" : "")"
            case .evalJob(let e): return "send \(n(p)) eval-job \(e.request)/\(e.job)/\(e.attempt)"
            case .error(let e): return "send \(n(p)) error \(e.code)\(e.key.map { " " + k($0) } ?? ""): \(e.message)"
            case .goodbye(let r): return "send \(n(p)) goodbye: \(r)"
            }
        case .forget(let p): return "forget \(n(p))"
        case let .fold(i, slot, payload): return "fold \(i)/\(slot) payload=\(payload)"
        case let .applyMetaUpdate(i): return "apply \(i)"
        case .writeCheckpoint(let i): return "checkpoint \(i)"
        case let .log(level, text):
            switch level {
            case .debug, .info: return nil
            case .warning: return "log warning: \(text)"
            case .error: return "log error: \(text)"
            }
        case .finished: return "finished"
        case .abort(let r): return "abort: \(r)"
        case let .confirmDivergence(key, reason): return "confirm-divergence \(k(key)): \(reason)"
        case let .forwardEvalOutcome(client, e): return "forward \(n(client)) \(e.request)/\(e.job)/\(e.attempt)"
        case .forgetEvalRequest(let r): return "forget-request \(r)"
        }
    }

    enum TranscriptError: Error, CustomStringConvertible {
        case bad(String)
        var description: String { if case .bad(let s) = self { return s } else { return "" } }
    }
}
