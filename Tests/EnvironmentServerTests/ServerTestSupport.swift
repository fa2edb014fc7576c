import Environments
import EnvironmentServer
import Foundation
import NeuralNet

/// Where the tests find Python: the venv `scripts/envserver-venv.sh` makes (test.sh makes it and sets
/// METATRAIN_PYTHON), with the repository's python/ and its test environments on the path.
enum ServerTestSupport {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    static func options(stepTimeoutMs: Int = 10_000) -> EnvironmentServerPool.Options {
        var o = EnvironmentServerPool.Options(python: EnvironmentServerPool.Options.defaultPython, allowedModules: ["faulty_envs"],
                                              pythonPath: [repository + "/python", repository + "/python/tests"])
        o.stepTimeoutMs = stepTimeoutMs
        o.startTimeoutMs = 60_000
        return o
    }

    /// A pool, after checking its Python can run the server at all (a clear failure, never a silent skip).
    static func pool(stepTimeoutMs: Int = 10_000) throws -> EnvironmentServerPool {
        let pool = EnvironmentServerPool(options: options(stepTimeoutMs: stepTimeoutMs))
        do { _ = try pool.identity() } catch {
            throw SetupError(text: "the environment server cannot start with '\(pool.options.python)' (\(error)); run scripts/envserver-venv.sh and set METATRAIN_PYTHON=.build/envserver/venv/bin/python")
        }
        return pool
    }

    struct SetupError: Error, CustomStringConvertible { let text: String; var description: String { text } }

    static func faulty(_ fault: String, atStep: Int) -> GymnasiumTask {
        GymnasiumTask(entryPoint: "faulty_envs:make", kwargs: ["fault": .string(fault), "at_step": .int(Int64(atStep))])
    }
}

/// Gymnasium's CartPole through the server, with every episode started where metatrain's built-in CartPole starts
/// it (drawn by `CartPole.reset` from the same generator, then set over the protocol): the two must then agree bit
/// for bit, which is the exactness check of the server path.
struct CartPoleStartedLikeOurs: Environment {
    var remote: GymnasiumEnvironment
    var local: CartPole

    var observationSize: Int { remote.observationSize }
    var actionCount: Int { remote.actionCount }
    var maxEpisodeSteps: Int { remote.maxEpisodeSteps }
    var state: [Double] { local.state }
    var fault: (any Error)? { remote.fault }

    mutating func reset(using rng: inout SeededRNG) {
        local.reset(using: &rng)
        do { try remote.setState(local.state) } catch { fatalError("set_state failed: \(error)") }
    }
    mutating func setState(_ state: [Double]) throws { try remote.setState(state) }
    mutating func step(_ action: Int) -> StepOutcome { remote.step(action) }
    func writeObservation(to buffer: UnsafeMutablePointer<Float>) { remote.writeObservation(to: buffer) }
}
