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
/// (a multiple or off), slot_timeout, min_timeout, stall, serve (1: stay up for eval requests), strikes,
/// failure_warning), then
/// `at MS EVENT`, where EVENT is `hello PEER [threads=N]`, `heartbeat PEER [steps=N]`, `result PEER IT/SLOT/ATTEMPT
/// [v=VERSION] [run=ID] [payload=N]`, `failed PEER IT/SLOT/ATTEMPT REASON`, `missing PEER IT/SLOT/ATTEMPT`,
/// `diverged PEER IT/SLOT/ATTEMPT REASON`, `checked IT/SLOT/ATTEMPT usable [payload=N] | diverged REASON |
/// unverifiable REASON` (the shell's recomputation), `invalid PEER IT/SLOT/ATTEMPT REASON`, `malformed PEER REASON`,
/// `goodbye PEER`, `eval PEER jobs=I,J…` (the Scheduler numbers requests from 1), `outcome PEER REQ/JOB/ATTEMPT`, `evalfailed PEER
/// REQ/JOB/ATTEMPT REASON` or `tick`. Parsing is strict: an unknown event or key, a missing argument or a number
/// that does not parse is an error naming the line. Commands print one per line; debug and info logs are left out
/// (their text is not part of the contract), warnings and errors are kept.
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
            // Options (KEY=VALUE) and the plain words before them; every option must be one the event takes.
            let options = Dictionary(args.filter { $0.contains("=") }.map {
                let kv = $0.split(separator: "=", maxSplits: 1).map(String.init)
                return (kv[0], kv.count > 1 ? kv[1] : "")
            }, uniquingKeysWith: { $1 })
            let plain = args.filter { !$0.contains("=") }
            func takes(_ keys: Set<String>, plain count: Int, text: Bool = false) throws {
                if let unknown = options.keys.sorted().first(where: { !keys.contains($0) }) { throw fail("unknown key `\(unknown)`") }
                if plain.count < count { throw fail("\(words[2]) takes \(count) argument(s)") }
                if !text && plain.count > count { throw fail("unexpected `\(plain[count])`") }
            }
            func integer<T: FixedWidthInteger>(_ key: String, _ fallback: T) throws -> T {
                guard let raw = options[key] else { return fallback }
                guard let value = T(raw) else { throw fail("`\(key)=\(raw)` is not a number") }
                return value
            }
            func key3(_ s: String, _ what: String) throws -> [Int] {
                let p = s.split(separator: "/", omittingEmptySubsequences: false).map { Int($0) }
                guard p.count == 3, p.allSatisfy({ $0 != nil }) else { throw fail("\(what) is three numbers A/B/C, not `\(s)`") }
                return p.map { $0! }
            }
            func slotKey(_ s: String) throws -> SlotKey {
                let p = try key3(s, "a slot key (ITERATION/SLOT/ATTEMPT)")
                return SlotKey(iteration: p[0], slot: p[1], attempt: p[2])
            }
            func evalKey(_ s: String) throws -> EvalKey {
                let p = try key3(s, "an eval key (REQUEST/JOB/ATTEMPT)")
                return EvalKey(request: p[0], job: p[1], attempt: p[2])
            }
            func reason(from index: Int) -> String { plain.dropFirst(index).joined(separator: " ") }
            // The events of a worker, a slot and a reason.
            let aboutASlot: [String: (Peer, SlotKey, String) -> SchedulerEvent<Int>] = [
                "failed": { .taskFailed($0, $1, $2) }, "diverged": { .slotDiverged($0, $1, $2) },
                "invalid": { .invalidResult($0, $1, $2) },
            ]
            let event: SchedulerEvent<Int>
            switch words[2] {
            case let kind where aboutASlot[kind] != nil:
                try takes([], plain: 3, text: true)
                event = aboutASlot[kind]!(peer(plain[0]), try slotKey(plain[1]), reason(from: 2))
            case "hello":
                try takes(["threads"], plain: 1)
                event = .hello(peer(plain[0]), Hello(host: plain[0], cores: 1, threads: try integer("threads", 1)))
            case "heartbeat":
                try takes(["steps"], plain: 1)
                event = .heartbeat(peer(plain[0]), envSteps: options["steps"] == nil ? nil : try integer("steps", UInt64(0)))
            case "result":
                try takes(["v", "run", "payload"], plain: 2)
                let key = try slotKey(plain[1])
                event = .result(peer(plain[0]), runID: options["run"] ?? "run-1", key: key,
                                parameterVersion: try integer("v", key.iteration), payload: try integer("payload", 0))
            case "missing":
                try takes([], plain: 2)
                event = .parametersMissing(peer(plain[0]), try slotKey(plain[1]))
            case "checked":
                try takes(["payload"], plain: 2, text: true)
                let key = try slotKey(plain[0])
                switch plain[1] {
                case "usable": event = .divergenceChecked(key, .usable(try integer("payload", 0)))
                case "diverged": event = .divergenceChecked(key, .diverged(reason(from: 2)))
                case "unverifiable": event = .divergenceChecked(key, .unverifiable(reason(from: 2)))
                default: throw fail("a check finds `usable`, `diverged` or `unverifiable`")
                }
            case "malformed":
                try takes([], plain: 2, text: true)
                event = .malformed(peer(plain[0]), reason(from: 1), code: .malformed)
            case "goodbye":
                try takes([], plain: 1)
                event = .goodbye(peer(plain[0]))
            case "eval":
                try takes(["jobs"], plain: 1)
                let jobs = try (options["jobs"] ?? "").split(separator: ",").map { j -> Int in
                    guard let n = Int(j) else { throw fail("`jobs=` takes numbers separated by commas") }
                    return n
                }
                event = .request(peer(plain[0]), jobs: jobs)
            case "outcome":
                try takes([], plain: 2)
                event = .outcome(peer(plain[0]), try evalKey(plain[1]))
            case "evalfailed":
                try takes([], plain: 3, text: true)
                event = .evalFailed(peer(plain[0]), try evalKey(plain[1]), reason(from: 2))
            case "tick":
                try takes([], plain: 0)
                event = .tick
            default:
                throw fail("unknown event `\(words[2])`")
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
        let known: Set<String> = ["iterations", "batch", "heartbeat", "liveness", "checkpoint", "backup", "slot_timeout",
                                  "min_timeout", "stall", "serve", "strikes", "failure_warning"]
        for w in words {
            let kv = w.split(separator: "=", maxSplits: 1).map(String.init)
            guard kv.count == 2 else { throw fail("settings take KEY=VALUE") }
            guard known.contains(kv[0]) else { throw fail("unknown setting `\(kv[0])`") }
            values[kv[0]] = kv[1]
        }
        func int<T: FixedWidthInteger>(_ k: String, _ d: T) throws -> T {
            guard let raw = values[k] else { return d }
            guard let v = T(raw) else { throw fail("`\(k)=\(raw)` is not a number") }
            return v
        }
        var s = SchedulerSettings(runID: "run-1", iterations: try int("iterations", 1), metaBatch: try int("batch", 2),
                                  heartbeatIntervalMs: try int("heartbeat", 100), liveness: try int("liveness", 3),
                                  checkpointInterval: try int("checkpoint", 1))
        if let b = values["backup"] {
            guard b == "off" || Double(b) != nil else { throw fail("`backup=\(b)` is a multiple or off") }
            s.backupAfterMedianMultiple = b == "off" ? nil : Double(b)
        }
        s.slotTimeoutMs = try int("slot_timeout", s.slotTimeoutMs)
        s.minimumTimeoutMs = try int("min_timeout", s.minimumTimeoutMs)
        s.minimumStallMs = try int("stall", s.minimumStallMs)
        s.limits.maxStrikes = try int("strikes", s.limits.maxStrikes)
        s.failedAttemptsWarning = try int("failure_warning", s.failedAttemptsWarning)
        guard values["serve"] == nil || values["serve"] == "0" || values["serve"] == "1" else { throw fail("`serve=` is 0 or 1") }
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
        case let .forwardEvalOutcome(client, o): return "forward \(n(client)) \(o.key.request)/\(o.key.job)/\(o.key.attempt)"
        case .forgetEvalRequest(let r): return "forget-request \(r)"
        case let .holdEvalRequest(r, client, request): return "hold-request \(r) from \(n(client)): jobs \(request.jobs.map { String($0.index) }.joined(separator: ","))"
        }
    }

    enum TranscriptError: Error, CustomStringConvertible {
        case bad(String)
        var description: String { if case .bad(let s) = self { return s } else { return "" } }
    }
}
