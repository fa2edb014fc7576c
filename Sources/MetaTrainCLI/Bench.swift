import ArgumentParser
import Cluster
import DQN
import Environments
import Foundation
import MetaLearning
import NeuralNet
import Wire

/// `metatrain bench`: throughput of the pieces the inner loop is made of, one JSON object per line.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure update, environment, inner-loop and action throughput (build with -c release).")

    @Flag(help: "Print JSON lines {\"name\", \"value\", \"unit\"} (the only format; kept for scripts).")
    var json = false
    @Option(help: "Gradient updates timed per network shape.")
    var updates = 2_000
    @Option(help: "Env steps of the full inner-loop benchmark.")
    var adaptSteps = 20_000
    @Option(help: "GEMM kernels to compare besides the selected one: none, all (every one this CPU runs), or a comma-separated list of \(GEMMBackend.allCases.map(\.rawValue)).")
    var backends = "all"
    @Flag(help: "Only profile one DQN update: the time of each phase (sampling, the three forward passes, TD targets, loss, backward, optimiser, target copy) at h64/b64 and h256/b256 on each kernel, its FLOPs, and the GFLOP/s of a large SGEMM as this core's measured peak (docs/PERFORMANCE.md).")
    var profile = false
    @Flag(inversion: .prefixedNo, help: "Also time the gymnasium environment server (a Python with metatrain_envserver: scripts/envserver-venv.sh).")
    var environmentServer = true

    func run() throws {
        let selected = GEMMBackend.selected
        var chosen: [GEMMBackend] = [selected]
        switch backends {
        case "none", "default": break
        case "all": chosen += GEMMBackend.allCases.filter { $0 != selected && $0.isSupported }
        default:
            for name in backends.split(separator: ",") {
                guard let b = GEMMBackend(rawValue: String(name)) else { throw ValidationError("unknown kernel '\(name)'") }
                guard b.isSupported else { throw ValidationError("kernel '\(name)' cannot run on this CPU (\(Numerics.cpuFeatures))") }
                if b != selected { chosen.append(b) }
            }
        }
        // What the unsuffixed lines ran on: the kernel (from cpuid, or METATRAIN_KERNEL) and the CPU.
        emitText("kernel", selected.rawValue, "name")
        emitText("kernel.arithmetic", selected.arithmetic.rawValue, "name")
        emitText("kernel.portable", GEMMBackend.portable.rawValue, "name")
        // The start-up calibration that chose among the kernels of each class (none when a class has one kernel here).
        for (kernel, seconds) in GEMMBackend.calibration {
            emit("kernel.calibration.\(kernel.rawValue)", seconds * 1e6, "µs")
        }
        emitText("cpu", Numerics.cpuModel, "model")
        emitText("cpu.features", Numerics.cpuFeatures, "names")
        if profile {
            for backend in chosen + (chosen.contains(.openBLAS) ? [] : [.openBLAS]) {
                let suffix = backend == selected ? "" : ".\(backend.rawValue)"
                emit("peak.sgemm512\(suffix)", sgemmGFLOPs(size: 512, backend: backend), "GFLOP/s")
                for (hidden, batch) in [(64, 64), (256, 256)] { try emitProfile(hidden: hidden, batch: batch, backend: backend, suffix: suffix) }
            }
            return
        }
        for backend in chosen {
            let suffix = backend == selected ? "" : ".\(backend.rawValue)"
            for (hidden, batch) in [(64, 64), (256, 256)] {
                emit("update.h\(hidden).b\(batch)\(suffix)", try updatesPerSecond(hidden: hidden, batch: batch, backend: backend), "updates/s")
            }
            emit("act.h64\(suffix)", try greedyActionMicroseconds(backend: backend), "us")
        }
        emit("env.cartpole", try cartPoleStepsPerSecond(), "steps/s")
        emit("adapt.cartpole", try adaptStepsPerSecond(), "steps/s")
        if environmentServer { benchEnvironmentServer() }
        for algorithm in MetaAlgorithm.allCases {
            emit("slot.\(algorithm.rawValue).cartpole", try slotSeconds(algorithm), "s")
        }
        for workers in [64, 1_024] {
            emit("scheduler.result.w\(workers)", try schedulerMicrosecondsPerResult(workers: workers), "us")
        }
    }

    /// Microseconds of the coordinator's Scheduler per result (accepting it and handing out the next slot) with this
    /// many one-thread workers and a meta-batch of 4 × workers, results coming back in the order slots went out.
    ///
    /// Why: the scaling model charges the coordinator a fixed CPU per message, measured at up to 64 workers; this
    /// says whether the Scheduler's own step stays fixed as the cluster grows.
    func schedulerMicrosecondsPerResult(workers: Int) throws -> Double {
        var scheduler = try Scheduler<Void>(settings: SchedulerSettings(runID: "bench", iterations: 1_000_000, metaBatch: 4 * workers,
                                                                        heartbeatIntervalMs: 1000, liveness: 1000, checkpointInterval: 1_000_000),
                                            numerics: RunNumerics(policy: .any))
        let report = NumericsReport(kernel: "b", fingerprint: "b", portableKernel: "b", portableFingerprint: "b", cpu: "b")
        var now: Tick = 0
        var outstanding: [(Peer, SlotKey)] = []
        var next = 0
        func collect(_ commands: [SchedulerCommand<Void>]) {
            for case let .send(peer, .assign(key, _)) in commands { outstanding.append((peer, key)) }
        }
        for w in 0..<workers {
            let peer = Peer(withUnsafeBytes(of: UInt32(w).bigEndian, Array.init))
            collect(scheduler.handle(.hello(peer, Hello(host: "h", cores: 1, threads: 1, numerics: report)), now: now))
        }
        func answer(_ count: Int) {
            for _ in 0..<count where next < outstanding.count {
                now += 1
                let (peer, key) = outstanding[next]
                next += 1
                collect(scheduler.handle(.result(peer, runID: "bench", key: key, parameterVersion: key.iteration, payload: ()), now: now))
            }
        }
        answer(8 * workers)  // two iterations to warm up (the median slot time, the workers' versions)
        let results = 16 * workers
        return time { answer(results) } / Double(results) * 1e6
    }

    /// Seconds for one meta-training slot (2,000-step inner loop, 64-64 network, 512 query steps) per
    /// algorithm, all with the same SGD inner loop so the three differ only in the update they form:
    /// what second-order MAML costs over first-order.
    func slotSeconds(_ algorithm: MetaAlgorithm) throws -> Double {
        var dqn = DQNConfig()
        dqn.optimizer = .sgd
        dqn.learningRate = 0.01
        dqn.maxGradientNorm = nil
        var settings = InnerLoopSettings(dqn: dqn, budget: 2_000, querySteps: 512)
        // ES-MAML's slot needs its perturbation settings: cluster.yaml's defaults (meta.es).
        if algorithm == .esMAML { settings.evolution = EvolutionSettings() }
        let task = TaskSpec.cartPole(CartPoleParameters())
        var rng = SeededRNG(seed: 5)
        let theta = try makeNetwork(for: task, config: dqn).initialParameters(using: &rng)
        _ = try runSlot(theta: theta, task: task, algorithm: algorithm, settings: settings, seed: 1)
        let runs = 3
        return time { for i in 0..<runs { _ = try? runSlot(theta: theta, task: task, algorithm: algorithm, settings: settings, seed: UInt64(i + 2)) } } / Double(runs)
    }

    func emitText(_ name: String, _ value: String, _ unit: String) {
        let escaped = value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        print("{\"name\": \"\(name)\", \"value\": \"\(escaped)\", \"unit\": \"\(unit)\"}")
    }

    func emit(_ name: String, _ value: Double, _ unit: String) {
        let rounded = (value * 1000).rounded() / 1000
        print("{\"name\": \"\(name)\", \"value\": \(rounded), \"unit\": \"\(unit)\"}")
    }

    /// DQN updates/s for a 4→h→h→2 MLP with Adam, as dqn_torch.py --bench-updates times them.
    func updatesPerSecond(hidden: Int, batch: Int, backend: GEMMBackend) throws -> Double {
        // A full buffer of random transitions: sampling is part of our update, as it is of training.
        var (learner, buffer, rng) = try benchLearner(hidden: hidden, batch: batch, backend: backend)
        // Warm up for 0.2 s (caches, branch predictors, the CPU's clock), then the best of three timings: a first
        // cold run measured 13k updates/s where the warm ones measured 23k on the same machine.
        let warm = ContinuousClock.now
        while ContinuousClock.now - warm < .milliseconds(200) { _ = learner.update(from: buffer, using: &rng) }
        let seconds = (0..<3).map { _ in time { for _ in 0..<updates { _ = learner.update(from: buffer, using: &rng) } } }.min()!
        return Double(updates) / seconds
    }

    /// A learner for the 4→h→h→2 update benchmark with a full buffer of random transitions.
    func benchLearner(hidden: Int, batch: Int, backend: GEMMBackend) throws -> (DQNLearner, ReplayBuffer, SeededRNG) {
        var config = DQNConfig()
        config.hiddenLayers = [hidden, hidden]
        config.batchSize = batch
        let mlp = try MLP(sizes: [4, hidden, hidden, 2], backend: backend)
        var rng = SeededRNG(seed: 1)
        let learner = DQNLearner(mlp: mlp, initial: mlp.initialParameters(using: &rng), config: config)
        var buffer = ReplayBuffer(capacity: config.bufferCapacity, observationSize: 4)
        for _ in 0..<config.bufferCapacity {
            let o = (0..<4).map { _ in Float(rng.nextGaussian()) }, n = (0..<4).map { _ in Float(rng.nextGaussian()) }
            buffer.add(observation: o, action: rng.nextInt(below: 2), reward: 1, nextObservation: n,
                       terminal: rng.nextFloat() < 0.05)
        }
        return (learner, buffer, rng)
    }

    /// Floating-point operations of one update of a 4→h→h→2 network on a batch (multiply and add counted apart):
    /// the forward passes (Q⁻(s′) and Q(s), and Q(s′) under double DQN) of 2·batch·Σ fan-in·fan-out each, and a
    /// backward pass of twice a forward's but the first layer's input gradient (not computed); bias, ReLU, loss and
    /// Adam (~10 per parameter) are left out — they are what a FLOP count of the GEMMs does not see.
    static func updateFLOPs(hidden: Int, batch: Int, doubleDQN: Bool) -> Double {
        let layers = [(4, hidden), (hidden, hidden), (hidden, 2)]
        let forward = layers.reduce(0.0) { $0 + 2 * Double(batch * $1.0 * $1.1) }
        let backward = 2 * forward - 2 * Double(batch * 4 * hidden)
        return (doubleDQN ? 3 : 2) * forward + backward
    }

    /// Each phase's share of one update, profiled (`DQNLearner.profiledUpdate`), beside the unprofiled rate.
    func emitProfile(hidden: Int, batch: Int, backend: GEMMBackend, suffix: String) throws {
        var (learner, buffer, rng) = try benchLearner(hidden: hidden, batch: batch, backend: backend)
        let name = "profile.h\(hidden).b\(batch)\(suffix)"
        var seconds = [Double](repeating: 0, count: UpdatePhase.allCases.count)
        let warm = ContinuousClock.now
        while ContinuousClock.now - warm < .milliseconds(200) { _ = learner.profiledUpdate(from: buffer, using: &rng, seconds: &seconds) }
        seconds = seconds.map { _ in 0 }
        for _ in 0..<updates { _ = learner.profiledUpdate(from: buffer, using: &rng, seconds: &seconds) }
        let total = seconds.reduce(0, +)
        for phase in UpdatePhase.allCases {
            emit("\(name).\(phase.name)", seconds[phase.rawValue] / Double(updates) * 1e9, "ns")
        }
        emit("\(name).profiled_total", total / Double(updates) * 1e9, "ns")
        let rate = try updatesPerSecond(hidden: hidden, batch: batch, backend: backend)
        emit("\(name).update", 1e9 / rate, "ns")
        let flops = Self.updateFLOPs(hidden: hidden, batch: batch, doubleDQN: learner.config.doubleDQN)
        emit("\(name).flops", flops, "FLOP")
        emit("\(name).gflops", flops * rate / 1e9, "GFLOP/s")
    }

    /// GFLOP/s of a square single-precision GEMM (C ← A·B, n×n): the most this core does with the kernel.
    func sgemmGFLOPs(size n: Int, backend: GEMMBackend) -> Double {
        var rng = SeededRNG(seed: 9)
        let a = (0..<(n * n)).map { _ in Float(rng.nextGaussian()) }, b = (0..<(n * n)).map { _ in Float(rng.nextGaussian()) }
        var c = [Float](repeating: 0, count: n * n)
        func run() {
            gemm(transposeA: false, transposeB: false, m: n, n: n, k: n, alpha: 1, a: a, lda: n, b: b, ldb: n, beta: 0, c: &c, ldc: n, backend: backend)
        }
        run()
        let best = (0..<5).map { _ in time(run) }.min()!
        return 2 * Double(n * n * n) / best / 1e9
    }

    /// Microseconds for one greedy action on one observation with a 4→64→64→2 network.
    func greedyActionMicroseconds(backend: GEMMBackend) throws -> Double {
        let mlp = try MLP(sizes: [4, 64, 64, 2], backend: backend)
        var rng = SeededRNG(seed: 2)
        let learner = DQNLearner(mlp: mlp, initial: mlp.initialParameters(using: &rng), config: DQNConfig())
        let observations = (0..<64).map { _ in (0..<4).map { _ in Float(rng.nextGaussian()) } }
        let n = 200_000
        var sink = 0
        let seconds = time { for i in 0..<n { sink &+= learner.greedyAction(observations[i & 63]) } }
        if sink == -1 { print(sink) }
        return seconds / Double(n) * 1e6
    }

    /// CartPole env steps/s with random actions, resets included.
    func cartPoleStepsPerSecond() throws -> Double {
        var env = try CartPole()
        var rng = SeededRNG(seed: 3)
        env.reset(using: &rng)
        let n = 5_000_000
        var observation = [Float](repeating: 0, count: 4)
        let seconds = time {
            for _ in 0..<n {
                let outcome = env.step(Int(rng.next() & 1))
                env.writeObservation(to: &observation)
                if outcome.terminated || outcome.truncated { env.reset(using: &rng) }
            }
        }
        return Double(n) / seconds
    }

    /// Env steps/s of the whole inner loop with an update every step (dqn_torch.py --steps 20000's setting).
    func adaptStepsPerSecond() throws -> Double {
        let config = DQNConfig()
        let task = TaskSpec.cartPole(CartPoleParameters())
        let mlp = try makeNetwork(for: task, config: config)
        var rng = SeededRNG(seed: 4)
        let result = try adapt(initial: mlp.initialParameters(using: &rng), task: task, budget: adaptSteps, seed: 1, config: config)
        return Double(result.environmentSteps) / result.seconds
    }

    func time(_ body: () -> Void) -> Double {
        let clock = ContinuousClock()
        let d = clock.measure(body)
        return Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}
