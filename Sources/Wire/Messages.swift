import DQN
import Environments
import MetaLearning
import NeuralNet

/// The protocol version this build speaks; every envelope carries it and a mismatch is rejected.
/// Version 2 added the meta-evaluation messages (EvalRequest, EvalJob, EvalOutcome): a version-1
/// worker could not run eval jobs, so it is refused at hello rather than failing them one by one.
/// Version 3 added numerics to hello and welcome: a worker without a fingerprint cannot be held to a run's.
/// Version 4 added the sparse GoalNavigation2D fields and tabular MDPs with shared dynamics (a version-3 worker
/// would silently run another task), and the status request and reply.
/// Version 5 sends an assignment's θ and an eval job's parameters as a second frame encoded once for every
/// message that carries them (`SharedTensorField`); a version-4 worker would read the first frame alone.
/// Version 6 added `ALGORITHM_DISTILL` (a version-5 worker would refuse every distillation slot as malformed) and the
/// inner loop's `context_window` (a version-5 worker would silently train a network without context).
/// Version 7 added the inner loop's `teacher_steps` and `teacher_advantages`, MAML's teacher query (a version-6 worker
/// would silently send the TD query's gradient instead).
/// Version 8 added `ALGORITHM_ES_MAML` and the inner loop's `es_sigma`, `es_fitness_every` and `es_fitness_episodes`
/// (a version-7 worker would refuse every ES-MAML slot as malformed).
/// Version 9 added GoalNavigation2D's `control_rotation_degrees` (a version-8 worker would silently run the task with
/// its controls unturned).
/// Version 10 added gymnasium tasks (`GymnasiumTask`; a version-9 worker could not run them and would refuse each).
public let protocolVersion: UInt32 = 11

/// Identifies one attempt at one slot of one meta-iteration.
public struct SlotKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var iteration: Int
    public var slot: Int
    public var attempt: Int

    public init(iteration: Int, slot: Int, attempt: Int) {
        self.iteration = iteration; self.slot = slot; self.attempt = attempt
    }

    public static func < (a: SlotKey, b: SlotKey) -> Bool {
        (a.iteration, a.slot, a.attempt) < (b.iteration, b.slot, b.attempt)
    }

    public var description: String { "iteration \(iteration) slot \(slot) attempt \(attempt)" }
}

/// Worker → coordinator: register.
public struct Hello: Equatable, Sendable {
    public var host: String
    public var cores: Int
    public var threads: Int
    /// Set when re-registering, so the coordinator can forget the old entry at once.
    public var previousWorkerID: String
    /// What the worker computes with; the coordinator holds it to the run's `numerics` policy.
    public var numerics: NumericsReport

    public init(host: String, cores: Int, threads: Int, previousWorkerID: String = "", numerics: NumericsReport) {
        self.host = host; self.cores = cores; self.threads = threads; self.previousWorkerID = previousWorkerID
        self.numerics = numerics
    }
}

/// Coordinator → worker: registration accepted.
public struct Welcome: Equatable, Sendable {
    public var runID: String
    public var workerID: String
    public var heartbeatIntervalMs: Int
    public var liveness: Int
    /// `.portable`: the worker computes this run's slots and eval jobs on its portable kernel.
    public var numerics: NumericsPolicy

    public init(runID: String, workerID: String, heartbeatIntervalMs: Int, liveness: Int, numerics: NumericsPolicy) {
        self.runID = runID; self.workerID = workerID; self.heartbeatIntervalMs = heartbeatIntervalMs; self.liveness = liveness
        self.numerics = numerics
    }
}

/// Coordinator → worker: run one slot.
public struct Assignment: Equatable, Sendable {
    public var runID: String
    public var key: SlotKey
    public var task: TaskSpec
    public var innerLoop: InnerLoopSettings
    public var algorithm: MetaAlgorithm
    /// The slot's inner-loop seed, derived from (run seed, iteration, slot).
    public var seed: UInt64
    /// θ's version: the number of meta-updates applied.
    public var parameterVersion: Int
    /// θ itself, only when the worker does not hold `parameterVersion` yet (invariant 7).
    public var parameters: ParameterVector?

    public init(runID: String, key: SlotKey, task: TaskSpec, innerLoop: InnerLoopSettings, algorithm: MetaAlgorithm,
                seed: UInt64, parameterVersion: Int, parameters: ParameterVector?) {
        self.runID = runID; self.key = key; self.task = task; self.innerLoop = innerLoop; self.algorithm = algorithm
        self.seed = seed; self.parameterVersion = parameterVersion; self.parameters = parameters
    }
}

/// Worker → coordinator: a slot's outcome.
public struct SlotResult: Equatable, Sendable {
    public var runID: String
    public var key: SlotKey
    public var parameterVersion: Int
    public var update: ParameterVector
    public var statistics: SlotStatistics

    public init(runID: String, key: SlotKey, parameterVersion: Int, update: ParameterVector, statistics: SlotStatistics) {
        self.runID = runID; self.key = key; self.parameterVersion = parameterVersion
        self.update = update; self.statistics = statistics
    }
}

/// Why a message was refused.
public enum ErrorCode: Int32, Sendable, CaseIterable {
    case malformed = 1
    case protocolVersion = 2
    case unknownWorker = 3
    case wrongRun = 4
    case parametersMissing = 5
    case taskFailed = 6
    case rejected = 7
    /// Refused at hello: the worker's numerics fingerprint is not the run's.
    case numericsMismatch = 8
    /// The slot's update is not finite or exceeds `maxUpdateMagnitude`: the run diverged (deterministically, so
    /// every worker would report the same; not a strike).
    case diverged = 9
}

/// The largest |value| a slot's update may hold. The coordinator refuses larger ones (a finite but absurd update
/// would overflow θ); a worker checks its own result against the same bound and reports `.diverged` instead.
public let maxUpdateMagnitude: Float = WireLimits.maxUpdateMagnitude

extension ParameterVector {
    /// Why this update cannot be applied (a non-finite value, or one beyond `maxUpdateMagnitude`), or nil.
    public var divergence: String? {
        guard let i = values.firstIndex(beyond: maxUpdateMagnitude) else { return nil }
        if let j = values.firstIndex(beyond: .greatestFiniteMagnitude) { return "update value \(values[j]) at index \(j) is not finite" }
        return "update value \(values[i]) at index \(i) exceeds ±\(Int(maxUpdateMagnitude))"
    }
}

public struct ErrorReply: Equatable, Sendable {
    public var code: ErrorCode
    public var message: String
    /// The slot the error concerns, if it concerns one.
    public var key: SlotKey?

    public init(code: ErrorCode, message: String, key: SlotKey? = nil) {
        self.code = code; self.message = message; self.key = key
    }
}

/// Identifies one attempt at one job of one evaluation request (numbered by the coordinator).
public struct EvalKey: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var request: Int
    public var job: Int
    public var attempt: Int

    public init(request: Int, job: Int, attempt: Int) { self.request = request; self.job = job; self.attempt = attempt }

    public static func < (a: EvalKey, b: EvalKey) -> Bool { (a.request, a.job, a.attempt) < (b.request, b.job, b.attempt) }

    public var description: String { "eval request \(request) job \(job) attempt \(attempt)" }
}

/// Client → coordinator: run these meta-evaluation jobs on the workers.
public struct EvalRequest: Equatable, Sendable {
    /// The client's name for the request (in logs).
    public var requestID: String
    /// (index in the client's request, job): a resubmission after a reconnect carries only the missing ones.
    public var jobs: [(index: Int, job: AdaptationJob)]

    public init(requestID: String, jobs: [(index: Int, job: AdaptationJob)]) { self.requestID = requestID; self.jobs = jobs }

    public static func == (a: EvalRequest, b: EvalRequest) -> Bool {
        a.requestID == b.requestID && a.jobs.count == b.jobs.count
            && zip(a.jobs, b.jobs).allSatisfy { $0.index == $1.index && $0.job == $1.job }
    }
}

/// Coordinator → worker: run one meta-evaluation job.
public struct EvalJobMessage: Equatable, Sendable {
    public var key: EvalKey
    public var job: AdaptationJob
    public init(key: EvalKey, job: AdaptationJob) { self.key = key; self.job = job }
}

/// Worker → coordinator → client: one job's outcome, or why it failed.
public struct EvalOutcome: Equatable, Sendable {
    public var key: EvalKey
    public var outcome: AdaptationOutcome
    /// Non-nil when the job failed; `outcome` is then empty.
    public var error: String?
    public init(key: EvalKey, outcome: AdaptationOutcome, error: String? = nil) {
        self.key = key; self.outcome = outcome; self.error = error
    }
}

/// Every message between coordinator, workers and eval clients.
public enum Message: Equatable, Sendable {
    case hello(Hello)
    case welcome(Welcome)
    /// Any message counts as one; `envSteps` (from a worker) is its compute threads' running total of env steps,
    /// so the coordinator can tell a slow worker from a stuck one (0 from the coordinator and eval clients).
    case heartbeat(envSteps: UInt64)
    case assignment(Assignment)
    case result(SlotResult)
    case error(ErrorReply)
    /// From a worker: it is leaving. From the coordinator: it is stopping — for good (`resumable` false: the run
    /// finished or needs a person), or before the run ended with a checkpoint to resume from (`resumable`: a
    /// worker reconnects as to a lost coordinator; protocol 11).
    case goodbye(reason: String, resumable: Bool = false)
    case evalRequest(EvalRequest)
    case evalJob(EvalJobMessage)
    case evalOutcome(EvalOutcome)
    /// `metatrain status tcp://…`: where the run stands (answered by the coordinator's shell, not its scheduler).
    case statusRequest
    /// The status.json object, as JSON text.
    case statusReply(json: String)

    /// A short name for logs.
    public var kind: String {
        switch self {
        case .hello: return "hello"
        case .welcome: return "welcome"
        case .heartbeat: return "heartbeat"
        case .assignment: return "assignment"
        case .result: return "result"
        case .error: return "error"
        case .goodbye: return "goodbye"
        case .evalRequest: return "eval request"
        case .evalJob: return "eval job"
        case .evalOutcome: return "eval outcome"
        case .statusRequest: return "status request"
        case .statusReply: return "status reply"
        }
    }
}
