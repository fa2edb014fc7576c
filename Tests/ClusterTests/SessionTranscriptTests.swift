import Cluster
import Environments
import Foundation
import MetaLearning
import NeuralNet
import Testing
import Wire

/// Worker and eval-client session scenarios written as transcripts, like the Scheduler's (`SchedulerTranscriptTests`):
/// each file in Scenarios/sessions/ is a sequence of events, each followed by the actions the session must answer
/// with, indented. Every message the session receives is encoded and decoded by the real wire codec first.
/// `METATRAIN_REWRITE_TRANSCRIPTS=1` rewrites the files with what the sessions say now, for review in the diff.
///
/// First line: `worker KEY=VALUE…` (heartbeat, liveness, backoff, max_backoff, give_up, give_up_lost,
/// next_run: 1 waits for the next run after a final goodbye) or `client KEY=VALUE…`
/// (heartbeat, liveness, backoff, max_backoff, unreachable, jobs). Then `at MS EVENT`:
/// - both: `start`, `tick [steps=N]`, `stop`, `welcome [run=ID] [id=ID] [portable]`, `heartbeat`,
///   `goodbye [resumable]`,
///   `error CODE [IT/SLOT/ATTEMPT] TEXT…`, `garbage`;
/// - worker: `assign IT/SLOT/ATTEMPT v=VERSION [theta=A,B…] [run=ID]`, `computed`;
/// - client: `outcome JOB [request=N] [misfit]`.
/// Actions print one per line; debug and info logs are left out, warnings and errors are kept.
@Suite struct SessionTranscriptTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Scenarios/sessions")

    static var scenarios: [String] { SchedulerTranscriptTests.transcripts(in: folder) }

    @Test func scenarioFilesExist() {
        #expect(Self.scenarios.count >= 3, "no session transcripts in \(Self.folder.path)")
    }

    @Test(arguments: scenarios) func transcript(_ name: String) throws {
        try SchedulerTranscriptTests.check(Self.folder.appendingPathComponent(name), replay: Self.replay)
    }

    enum Session {
        case worker(WorkerSession)
        case client(EvalClientSession)
    }

    static func replay(_ text: String, name: String) throws -> String {
        var out: [String] = []
        var session: Session?
        for (number, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw)
            if line.hasPrefix("  ") { continue }   // an expected action: replaced by what the session says
            out.append(line)
            let words = line.split(separator: " ").map(String.init)
            guard let first = words.first, !first.hasPrefix("#") else { continue }
            func fail(_ why: String) -> Error { SchedulerTranscriptTests.TranscriptError.bad("\(name):\(number + 1): \(why): \(line)") }
            var options: [String: String] = [:]
            for word in words.dropFirst() where word.contains("=") {
                let parts = word.split(separator: "=", maxSplits: 1).map(String.init)
                options[parts[0]] = parts[1]
            }
            func int(_ key: String, _ fallback: Int) throws -> Int {
                guard let v = options[key] else { return fallback }
                guard let n = Int(v) else { throw fail("\(key) must be a number") }
                return n
            }
            if first == "worker" {
                var s = WorkerSession.Settings(hello: Hello(host: "h", cores: 2, threads: 1), kernel: .selected)
                s.heartbeatIntervalMs = try int("heartbeat", 100); s.liveness = try int("liveness", 3)
                s.initialBackoffMs = try int("backoff", 1000); s.maxBackoffMs = try int("max_backoff", 4000)
                s.giveUpAfterMs = options["give_up"] == nil ? nil : try int("give_up", 0)
                s.giveUpAfterLostMs = options["give_up_lost"] == nil ? nil : try int("give_up_lost", 0)
                s.waitForNextRun = try int("next_run", 0) != 0
                session = .worker(WorkerSession(settings: s))
                continue
            }
            if first == "client" {
                var s = EvalClientSession.Settings()
                s.heartbeatIntervalMs = try int("heartbeat", 100); s.liveness = try int("liveness", 3)
                s.initialBackoffMs = try int("backoff", 500); s.maxBackoffMs = try int("max_backoff", 2000)
                s.unreachableTimeoutMs = try int("unreachable", 5000)
                s.endpoint = "tcp://coordinator:5555"; s.requestPrefix = "eval"
                session = .client(EvalClientSession(jobs: (0..<(try int("jobs", 3))).map(SchedulerSimulationTests.evalJob), settings: s))
                continue
            }
            guard first == "at", words.count >= 3, let now = Tick(words[1]), let current = session else {
                throw fail("expected `worker …` or `client …` first, then `at MS EVENT`")
            }
            let args = Array(words.dropFirst(3)).filter { !$0.contains("=") }
            func key(_ s: String) throws -> SlotKey {
                let p = s.split(separator: "/").compactMap { Int($0) }
                guard p.count == 3 else { throw fail("a slot key is ITERATION/SLOT/ATTEMPT") }
                return SlotKey(iteration: p[0], slot: p[1], attempt: p[2])
            }
            /// A message from the coordinator, as frames through the real codec.
            func inbound() throws -> [[UInt8]]? {
                let message: Message
                switch words[2] {
                case "welcome":
                    message = .welcome(Welcome(runID: options["run"] ?? "r1", workerID: options["id"] ?? "c0-w1", heartbeatIntervalMs: 100,
                                               liveness: 3, numerics: args.contains("portable") ? .portable : .strict))
                case "heartbeat": message = .heartbeat(envSteps: 0)
                case "goodbye":
                    message = args.contains("resumable") ? .goodbye(reason: "coordinator stopping (signal)", resumable: true)
                                                         : .goodbye(reason: "run finished")
                case "garbage": return [[0xFF, 0x00, 0x13]]
                case "error":
                    guard let codeName = args.first, let code = ErrorCode.allCases.first(where: { "\($0)" == codeName }) else {
                        throw fail("error needs a code: \(ErrorCode.allCases.map { "\($0)" })")
                    }
                    let slot = try args.dropFirst().first.flatMap { $0.contains("/") ? try key($0) : nil }
                    message = .error(ErrorReply(code: code, message: args.dropFirst(slot == nil ? 1 : 2).joined(separator: " "), key: slot))
                case "assign":
                    guard let k = args.first else { throw fail("assign needs a key") }
                    let theta = options["theta"].map { ParameterVector($0.split(separator: ",").compactMap { Float($0) }) }
                    let a = Assignment(runID: options["run"] ?? "r1", key: try key(k), task: .cartPole(CartPoleParameters()),
                                       innerLoop: InnerLoopSettings(budget: 10, querySteps: 1), algorithm: .reptile, seed: 1,
                                       parameterVersion: try int("v", 0), parameters: nil)
                    guard let theta else { return [WireCodec.encode(.assignment(a))] }
                    let shared = SharedTensorField(theta, for: .assignment)
                    return [WireCodec.encodeHead(.assignment(a), shared: shared), shared.bytes]
                case "outcome":
                    guard let j = args.first.flatMap(Int.init) else { throw fail("outcome needs a job index") }
                    let job = SchedulerSimulationTests.evalJob(j)
                    let eval = EvalJobMessage(key: EvalKey(request: try int("request", 1), job: j, attempt: 0), job: job)
                    let outcome = args.contains("misfit") ? AdaptationOutcome(returns: [1], final: nil) : SchedulerSimulationTests.evalResult(eval)
                    message = .evalOutcome(EvalOutcome(key: eval.key, outcome: outcome))
                default: return nil
                }
                return [WireCodec.encode(message)]
            }
            switch current {
            case .worker(var s):
                let event: WorkerSession.Event
                switch words[2] {
                case "start": event = .start
                case "tick": event = .tick(envSteps: UInt64(try int("steps", 0)))
                case "stop": event = .stop
                case "computed": event = .computed(EncodedMessage([1, 2, 3]))
                default:
                    guard let frames = try inbound() else { throw fail("unknown worker event") }
                    event = .received(frames)
                }
                out += s.handle(event, now: now).compactMap(Self.describe)
                session = .worker(s)
            case .client(var s):
                let event: EvalClientSession.Event
                switch words[2] {
                case "start": event = .start
                case "tick": event = .tick
                case "stop": event = .stop
                default:
                    guard let frames = try inbound() else { throw fail("unknown client event") }
                    event = .received(frames)
                }
                out += s.handle(event, now: now).compactMap(Self.describe)
                session = .client(s)
            }
        }
        return out.joined(separator: "\n")
    }

    static func describe(_ message: Message) -> String {
        switch message {
        case .hello(let h): return "hello" + (h.previousWorkerID.isEmpty ? "" : " previous=\(h.previousWorkerID)")
        case .heartbeat(let steps): return "heartbeat steps=\(steps)"
        case .goodbye(let reason, let resumable): return "goodbye\(resumable ? " (resumable)" : ""): \(reason)"
        case .error(let e): return "error \(e.code)" + (e.key.map { " \($0.iteration)/\($0.slot)/\($0.attempt)" } ?? "") + ": \(e.message)"
        case .evalRequest(let r): return "eval request \(r.requestID) jobs=\(r.jobs.map { String($0.index) }.joined(separator: ","))"
        default: return message.kind
        }
    }

    static func describe(_ action: WorkerSession.Action) -> String? {
        switch action {
        case .connect: return "  connect"
        case .disconnect: return "  disconnect"
        case .send(let m): return "  send \(describe(m))"
        case .transmit(let bytes): return "  transmit \(bytes.count) bytes"
        case let .compute(.slot(a, theta, kernel)):
            return "  compute slot \(a.key.iteration)/\(a.key.slot)/\(a.key.attempt) v=\(a.parameterVersion) theta=\(theta.values.map { "\($0)" }.joined(separator: ","))"
                + (kernel == .portable ? " portable" : "")
        case let .compute(.eval(j, _)): return "  compute eval \(j.key.request)/\(j.key.job)"
        case .dropQueuedJobs: return "  drop queued jobs"
        case .log(let level, let text): return level == .warning || level == .error ? "  log \(level): \(text)" : nil
        case .finish: return "  finish"
        case let .giveUp(ms, lost): return "  give up after \(ms) ms\(lost ? " without the coordinator it had" : "")"
        case .refused(let reason): return "  refused: \(reason)"
        }
    }

    static func describe(_ action: EvalClientSession.Action) -> String? {
        switch action {
        case .connect: return "  connect"
        case .disconnect: return "  disconnect"
        case .send(let m): return "  send \(describe(m))"
        case .completed(let i): return "  completed \(i)"
        case .finished(let outcomes): return "  finished: \(outcomes.count) outcomes"
        case .failed(let reason): return "  failed: \(reason)"
        case .log(let level, let text): return level == .warning || level == .error ? "  log \(level): \(text)" : nil
        }
    }
}
