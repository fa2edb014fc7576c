import DQN
import Environments
import EnvironmentServer
import NeuralNet
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Every way a user's environment can fail ends the task with a reason naming it, never the worker, and the
/// next task gets a working server (the same one when it survived, a new one when it did not).
@Suite(.serialized) struct EnvironmentServerFaultTests {
    /// Adapts on `task` with a small DQN; the error it throws, or nil.
    static func failure(_ task: GymnasiumTask, pool: EnvironmentServerPool) -> String? {
        do {
            var env = try pool.makeGymnasiumEnvironment(for: task)
            var config = DQNConfig()
            config.learningStarts = 10
            let mlp = try MLP(sizes: [env.observationSize] + config.hiddenLayers + [env.actionCount])
            var rng = SeededRNG(seed: 1)
            _ = try DQN.adapt(initial: mlp.initialParameters(using: &rng), environment: &env, budget: 300, seed: 3, config: config)
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// After a fault, a healthy task must run on this pool.
    static func recovers(_ pool: EnvironmentServerPool) {
        #expect(failure(ServerTestSupport.faulty("none", atStep: 0), pool: pool) == nil)
    }

    @Test func anExceptionFailsTheTaskWithItsTypeAndMessageAndTheServerLivesOn() throws {
        let pool = try ServerTestSupport.pool()
        let reason = try #require(Self.failure(ServerTestSupport.faulty("raise", atStep: 120), pool: pool))
        #expect(reason.contains("faulty_envs:make") && reason.contains("RuntimeError") && reason.contains("the simulator broke at step 120"), "\(reason)")
        Self.recovers(pool)
        #expect(pool.serversStarted == 1)
    }

    @Test func aServerThatExitsOrCrashesIsReportedAndReplaced() throws {
        let pool = try ServerTestSupport.pool()
        let exited = try #require(Self.failure(ServerTestSupport.faulty("exit", atStep: 40), pool: pool))
        #expect(exited.contains("exited with status 9"), "\(exited)")
        let crashed = try #require(Self.failure(ServerTestSupport.faulty("segfault", atStep: 40), pool: pool))
        #expect(crashed.contains("signal 11"), "\(crashed)")
        Self.recovers(pool)
        #expect(pool.serversStarted == 3)
    }

    @Test func aServerKilledFromOutsideFailsTheTaskNamingTheSignal() throws {
        let pool = try ServerTestSupport.pool()
        var env = try pool.makeGymnasiumEnvironment(for: ServerTestSupport.faulty("none", atStep: 0))
        var rng = SeededRNG(seed: 1)
        env.reset(using: &rng)
        _ = env.step(1)
        #expect(env.fault == nil)
        // The server the environment holds is the one the pool started: kill -9 it, as an OOM killer would.
        kill(try #require(pool.serverPIDs.first), SIGKILL)
        let outcome = env.step(0)
        #expect(outcome.terminated)
        let reason = "\(try #require(env.fault))"
        #expect(reason.contains("killed by signal 9") && reason.contains("during step"), "\(reason)")
        Self.recovers(pool)
        #expect(pool.serversStarted == 2)
    }

    @Test func aHungStepTimesOutAndTheServerIsKilled() throws {
        let pool = try ServerTestSupport.pool(stepTimeoutMs: 400)
        let reason = try #require(Self.failure(ServerTestSupport.faulty("hang", atStep: 30), pool: pool))
        #expect(reason.contains("did not answer step within 400 ms"), "\(reason)")
        Self.recovers(pool)
        #expect(pool.serversStarted == 2)
    }

    @Test func nonFiniteValuesAndWrongShapesFailTheTask() throws {
        let pool = try ServerTestSupport.pool()
        let nan = try #require(Self.failure(ServerTestSupport.faulty("nan", atStep: 25), pool: pool))
        #expect(nan.contains("not finite"), "\(nan)")
        let inf = try #require(Self.failure(ServerTestSupport.faulty("inf-reward", atStep: 25), pool: pool))
        #expect(inf.contains("reward inf"), "\(inf)")
        let shape = try #require(Self.failure(ServerTestSupport.faulty("shape", atStep: 25), pool: pool))
        #expect(shape.contains("shape (5,)"), "\(shape)")
        Self.recovers(pool)
    }

    @Test func modulesNotAllowedAreRefusedBeforeAnyImport() throws {
        let pool = try ServerTestSupport.pool()
        let reason = try #require(Self.failure(GymnasiumTask(entryPoint: "os:system"), pool: pool))
        #expect(reason.contains("not started to allow") && reason.contains("--allow-module os"), "\(reason)")
        let spaces = try #require(Self.failure(GymnasiumTask(environmentID: "Pendulum-v1"), pool: pool))
        #expect(spaces.contains("Discrete actions"), "\(spaces)")
    }

    @Test func aMissingInterpreterIsAClearError() throws {
        var options = ServerTestSupport.options()
        options.python = "/nonexistent/python"
        let pool = EnvironmentServerPool(options: options)
        let reason = try #require(Self.failure(GymnasiumTask(environmentID: "CartPole-v1"), pool: pool))
        #expect(reason.contains("could not start the environment server"), "\(reason)")
    }
}

@Suite struct EnvironmentFingerprintTests {
    @Test func theFingerprintIsStableAndNamesTheVersions() throws {
        let pool = try ServerTestSupport.pool()
        let first = try pool.environmentFingerprint(), second = try pool.environmentFingerprint()
        #expect(first == second)
        #expect(first.range(of: #"^[0-9a-f]{16} \(python \d+\.\d+\.\d+, gymnasium \d+\.\d+\.\d+, numpy .*faulty_envs "#, options: .regularExpression) != nil, "\(first)")
        // Another allowed module set is another identity.
        var options = ServerTestSupport.options()
        options.allowedModules = []
        #expect(try EnvironmentServerPool(options: options).environmentFingerprint() != first)
    }
}
