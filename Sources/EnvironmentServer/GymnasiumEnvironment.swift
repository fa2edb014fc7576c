import CAffinity
import Environments
import Foundation
import NeuralNet

/// A gymnasium task's environment, stepped in a server process the pool lent it: an `Environment` like the
/// built-in ones, whose failures latch in `fault` (see `Environment.fault`).
///
/// Each reset sends a seed drawn from the caller's generator, so every episode is a function of the slot's seed and
/// any worker reproduces it. Observations and rewards are checked (finite, the size the space promised) as they arrive.
public struct GymnasiumEnvironment: Environment {
    public let task: GymnasiumTask
    public let observationSize: Int
    public let actionCount: Int
    public let maxEpisodeSteps: Int
    /// The spaces as the server described them (gymnasium's `str(space)`).
    public let observationSpace: String
    public let actionSpace: String
    private let lease: ServerLease
    private var current: [Float]
    public private(set) var fault: (any Error)?

    init(task: GymnasiumTask, lease: ServerLease) throws {
        self.task = task
        self.lease = lease
        let text = task.json
        let reply = try Array(text.utf8).withUnsafeBytes { try lease.call(.make, payload: $0, timeoutMs: lease.pool.options.startTimeoutMs) }
        guard let object = try? JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any],
              let size = object["observation_size"] as? Int, let actions = object["action_count"] as? Int,
              let steps = object["max_episode_steps"] as? Int else {
            throw EnvironmentFailure(environment: task.name, reason: .protocolViolation("an unreadable reply to make"))
        }
        guard (1...EnvironmentServerPool.maxObservationSize).contains(size), (1...EnvironmentServerPool.maxActions).contains(actions), steps > 0 else {
            throw EnvironmentFailure(environment: task.name, reason: .badValues(
                "\(size) observation values and \(actions) actions: metatrain takes 1 to \(EnvironmentServerPool.maxObservationSize) and 1 to \(EnvironmentServerPool.maxActions)"))
        }
        observationSize = size
        actionCount = actions
        maxEpisodeSteps = steps
        observationSpace = object["observation_space"] as? String ?? "?"
        actionSpace = object["action_space"] as? String ?? "?"
        current = [Float](repeating: 0, count: size)
    }

    /// No internal state is exposed: gymnasium environments keep theirs in Python.
    public var state: [Double] { [] }

    public mutating func reset(using rng: inout SeededRNG) {
        let seed = rng.next()
        guard fault == nil else { return }
        do {
            let reply = try withUnsafeBytes(of: seed.littleEndian) {
                try lease.call(.reset, payload: $0, timeoutMs: lease.pool.options.stepTimeoutMs)
            }
            try take(observation: reply, after: "reset")
        } catch { fault = error }
    }

    /// Restarts the episode at `state` (`env.unwrapped.state`, for classic-control environments).
    public mutating func setState(_ state: [Double]) throws {
        try checkFault()
        let values = state.map { $0.bitPattern.littleEndian }
        let reply = try values.withUnsafeBytes { try lease.call(.setState, payload: $0, timeoutMs: lease.pool.options.stepTimeoutMs) }
        try take(observation: reply, after: "set_state")
    }

    public mutating func step(_ action: Int) -> StepOutcome {
        guard fault == nil else { return StepOutcome(reward: 0, terminated: true, truncated: false) }
        do {
            // The action's four bytes go straight from the stack: nothing is allocated per step on this side.
            let reply = try withUnsafeBytes(of: UInt32(truncatingIfNeeded: action).littleEndian) {
                try lease.call(.step, payload: $0, timeoutMs: lease.pool.options.stepTimeoutMs)
            }
            guard reply.count == 9 + 4 * observationSize else {
                throw EnvironmentFailure(environment: task.name, reason: .badValues(
                    "step sent \(reply.count) bytes; \(9 + 4 * observationSize) expected"))
            }
            let reward = Double(bitPattern: UInt64(littleEndian: reply.loadUnaligned(as: UInt64.self)))
            let flags = reply[8]
            guard reward.isFinite else {
                throw EnvironmentFailure(environment: task.name, reason: .badValues("step returned the reward \(reward)"))
            }
            try take(observation: UnsafeRawBufferPointer(rebasing: reply[9...]), after: "step")
            return StepOutcome(reward: reward, terminated: flags & 1 != 0, truncated: flags & 2 != 0)
        } catch {
            fault = error
            return StepOutcome(reward: 0, terminated: true, truncated: false)
        }
    }

    public func writeObservation(to buffer: UnsafeMutablePointer<Float>) {
        current.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: observationSize) }
    }

    /// Copies an observation in, refusing a wrong size or a value that is not finite.
    private mutating func take(observation bytes: UnsafeRawBufferPointer, after command: String) throws {
        guard bytes.count == 4 * observationSize else {
            throw EnvironmentFailure(environment: task.name, reason: .badValues(
                "\(command) returned \(bytes.count / 4) observation values; the space has \(observationSize)"))
        }
        var finite = true
        current.withUnsafeMutableBytes { $0.copyMemory(from: bytes) }
        for v in current where !v.isFinite { finite = false; break }
        guard finite else {
            throw EnvironmentFailure(environment: task.name, reason: .badValues(
                "\(command) returned an observation that is not finite: \(current.prefix(8).map { "\($0)" }.joined(separator: ", "))"))
        }
    }
}

/// A server lent to one environment; back to the pool when the environment is gone (unless it failed).
///
/// While lent, the server and the thread that made the environment share one CPU (`Options.pinsCPUs`): the two take
/// turns, never running at once, and a hand-over on one CPU costs a few microseconds where one across CPUs costs
/// a cross-processor wake-up (64 µs a round trip against 7.7 on one CPU, measured on a 2-vCPU KVM guest).
final class ServerLease: @unchecked Sendable {
    let pool: EnvironmentServerPool
    let server: EnvironmentServerProcess
    let environment: String
    private var pinned: (cpu: Int, saved: [UInt8])?

    init(pool: EnvironmentServerPool, server: EnvironmentServerProcess, environment: String) {
        self.pool = pool; self.server = server; self.environment = environment
        if pool.options.pinsCPUs, let cpu = pool.claimCPU() {
            var saved = [UInt8](repeating: 0, count: Int(mt_affinity_mask_bytes()))
            if mt_pin_thread(Int32(cpu), &saved) == 0 {
                _ = mt_pin_process(server.pid, Int32(cpu))
                pinned = (cpu, saved)
            } else {
                pool.releaseCPU(cpu)
            }
        }
    }

    deinit {
        if let pinned {
            _ = pinned.saved.withUnsafeBytes { mt_restore_thread($0.baseAddress) }
            pool.releaseCPU(pinned.cpu)
        }
        pool.checkin(server)
    }

    /// One request; the environment's failures come back as `EnvironmentFailure` naming it.
    func call(_ command: EnvironmentServerProcess.Command, payload: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
              timeoutMs: Int) throws -> UnsafeRawBufferPointer {
        do { return try server.call(command, payload: payload, timeoutMs: timeoutMs) } catch {
            throw EnvironmentFailure(environment: environment, reason: error)
        }
    }
}
