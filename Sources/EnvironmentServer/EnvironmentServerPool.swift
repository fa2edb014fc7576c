#if canImport(Glibc)
import Glibc
#endif
import CAffinity
import Environments
import Foundation
import NeuralNet

/// The environment servers of one process: one per environment in use (so one per compute thread), started on
/// demand, reused across tasks, and replaced when one dies, hangs or breaks the protocol.
///
/// Installed with `ExternalEnvironments.install(pool)`, it makes the environment of every gymnasium task.
public final class EnvironmentServerPool: GymnasiumEnvironmentMaker, @unchecked Sendable {
    public struct Options: Sendable, Equatable {
        /// The interpreter (a path, or a name looked up on PATH) with metatrain_envserver and gymnasium installed.
        public var python: String
        /// Modules entry points (and `module:id` ids) may import; nothing else is imported on a task's behalf.
        public var allowedModules: [String] = []
        /// Folders put in front of the server's PYTHONPATH (a user's environments that are not installed).
        public var pythonPath: [String] = []
        /// A reset or step that takes longer fails its task and the server is killed.
        public var stepTimeoutMs = 10_000
        /// Starting a server and making a task's environment (imports, asset loading) may take this long.
        public var startTimeoutMs = 120_000
        /// Idle servers kept for reuse (at least the compute threads).
        public var idleServers = 64
        /// Runs each server on one CPU with the thread that steps it, spreading the pairs over the CPUs this process
        /// may use (see `ServerLease`).
        public var pinsCPUs = true

        public init(python: String, allowedModules: [String] = [], pythonPath: [String] = []) {
            self.python = python; self.allowedModules = allowedModules; self.pythonPath = pythonPath
        }

        /// `METATRAIN_PYTHON` when set, else the scripts' venv (`.build/envserver/venv`) when it exists here, else `python3`.
        public static var defaultPython: String {
            if let python = ProcessInfo.processInfo.environment["METATRAIN_PYTHON"], !python.isEmpty { return python }
            let venv = ".build/envserver/venv/bin/python"
            return FileManager.default.isExecutableFile(atPath: venv) ? (FileManager.default.currentDirectoryPath + "/" + venv) : "python3"
        }
    }

    /// Bounds on what a server may describe (an observation is copied every step; DQN's outputs are actions).
    public static let maxObservationSize = 1 << 20
    public static let maxActions = 4_096

    public let options: Options
    private let lock = NSLock()
    private var idle: [EnvironmentServerProcess] = []
    private var startedCount = 0
    /// The CPUs this process may use, and how many leases hold each.
    private lazy var cpuClaims: [Int: Int] = {
        var cpus = [Int32](repeating: 0, count: 4096)
        let n = mt_allowed_cpus(&cpus, Int32(cpus.count))
        return Dictionary(uniqueKeysWithValues: cpus.prefix(max(Int(n), 0)).map { (Int($0), 0) })
    }()

    public init(options: Options) {
        self.options = options
        // A write to a server that died must fail with EPIPE, not end the worker.
        signal(SIGPIPE, SIG_IGN)
    }

    deinit { for server in idle { server.shutDown() } }

    /// Server processes started so far (a replaced server counts again).
    public var serversStarted: Int { lock.lock(); defer { lock.unlock() }; return startedCount }

    /// The process ids of the servers this pool started, oldest first (for tests that kill one from outside).
    public var serverPIDs: [pid_t] { lock.lock(); defer { lock.unlock() }; return startedPIDs }
    private var startedPIDs: [pid_t] = []

    public func makeEnvironment(for task: GymnasiumTask) throws -> any Environment {
        try makeGymnasiumEnvironment(for: task)
    }

    /// The task's environment, on an idle server or a new one.
    public func makeGymnasiumEnvironment(for task: GymnasiumTask) throws -> GymnasiumEnvironment {
        try GymnasiumEnvironment(task: task, lease: ServerLease(pool: self, server: try checkout(), environment: task.name))
    }

    /// What the servers compute with: the interpreter's and packages' versions (the server's IDENTITY JSON).
    public func identity() throws -> String {
        let lease = ServerLease(pool: self, server: try checkout(), environment: "identity")
        return String(decoding: try lease.call(.identity, timeoutMs: options.startTimeoutMs), as: UTF8.self)
    }

    /// What these servers compute with, for the numerics fingerprint: "HASH (python …, gymnasium …, numpy …[, module
    /// version …])", HASH 16 hex digits over the server's identity (interpreter, gymnasium, numpy, the allowed modules'
    /// versions) and a fixed 200-step rollout of gymnasium's CartPole-v1 (observations, rewards, ends, bit for bit).
    public func environmentFingerprint() throws -> String {
        let identity = try self.identity()
        var hash = FNV1a()
        for byte in identity.utf8 { hash.add(UInt64(byte)) }
        var env = try makeGymnasiumEnvironment(for: GymnasiumTask(environmentID: "CartPole-v1"))
        var rng = SeededRNG(seed: 0x656e_7669_726f_6e6d)
        env.reset(using: &rng)
        var observation = [Float](repeating: 0, count: env.observationSize)
        for step in 0..<200 {
            let outcome = env.step((step * 7 / 3) % env.actionCount)
            env.writeObservation(to: &observation)
            for v in observation { hash.add(UInt64(v.bitPattern)) }
            hash.add(outcome.reward.bitPattern)
            hash.add(UInt64(outcome.terminated ? 1 : outcome.truncated ? 2 : 0))
            if outcome.terminated || outcome.truncated { env.reset(using: &rng) }
        }
        try env.checkFault()
        let summary = (try? JSONSerialization.jsonObject(with: Data(identity.utf8)) as? [String: Any]).map { o in
            var parts = ["python \(o["python"] ?? "?")", "gymnasium \(o["gymnasium"] ?? "?")", "numpy \(o["numpy"] ?? "?")"]
            for (name, version) in ((o["modules"] as? [String: Any]) ?? [:]).sorted(by: { $0.key < $1.key }) { parts.append("\(name) \(version)") }
            return parts.joined(separator: ", ")
        } ?? "?"
        return String("\(hash.hex) (\(summary))".prefix(500))
    }

    /// The median round trip of `count` empty requests, in seconds (`metatrain bench`).
    public func pingSeconds(count: Int) throws -> Double {
        let lease = ServerLease(pool: self, server: try checkout(), environment: "ping")
        _ = try lease.call(.ping, timeoutMs: options.startTimeoutMs)
        var times: [Double] = []
        times.reserveCapacity(count)
        for _ in 0..<count {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try lease.call(.ping, timeoutMs: options.stepTimeoutMs)
            times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        times.sort()
        return times[times.count / 2]
    }

    /// The allowed CPU fewest leases hold (the lowest such), claimed; nil when none is known.
    func claimCPU() -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard let cpu = cpuClaims.min(by: { ($0.value, $0.key) < ($1.value, $1.key) })?.key else { return nil }
        cpuClaims[cpu]! += 1
        return cpu
    }

    func releaseCPU(_ cpu: Int) {
        lock.lock(); cpuClaims[cpu, default: 1] -= 1; lock.unlock()
    }

    func checkout() throws -> EnvironmentServerProcess {
        lock.lock()
        while let server = idle.popLast() {
            if server.ended == nil { lock.unlock(); return server }
        }
        startedCount += 1
        lock.unlock()
        let server = try EnvironmentServerProcess(python: options.python, allowedModules: options.allowedModules,
                                                  pythonPath: options.pythonPath)
        lock.lock(); startedPIDs.append(server.pid); lock.unlock()
        return server
    }

    /// Takes a server back; one that failed is dropped (the next checkout starts a fresh one).
    func checkin(_ server: EnvironmentServerProcess) {
        guard server.ended == nil else { server.terminate(); return }
        lock.lock()
        if idle.count < options.idleServers { idle.append(server); lock.unlock(); return }
        lock.unlock()
        server.shutDown()
    }
}
