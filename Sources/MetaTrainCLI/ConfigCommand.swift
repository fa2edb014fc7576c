import ArgumentParser
import Cluster
import EnvironmentServer
import Environments
import Foundation

/// `metatrain config`: validate cluster.yaml and print what scripts need from it.
struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Validate a cluster configuration; print its summary, or the fields launch scripts read.")

    @Argument(help: "The cluster configuration.") var path = "cluster.yaml"
    @Flag(help: "Print one line per worker host: HOST COUNT THREADS.") var workers = false
    @Flag(help: "Print the endpoint workers connect to.") var advertise = false

    func run() throws {
        let config = try loadConfig(path)
        if workers {
            for w in config.workers { print("\(w.host) \(w.count) \(w.threads)") }
        } else if advertise {
            print(Coordinator.advertisedEndpoint(bound: config.coordinator.bind, advertise: config.coordinator.advertise))
        } else {
            print("\(path): valid")
            print("run \(config.run.name), seed \(config.run.seed), folder \((config.run.runDir as NSString).appendingPathComponent(config.run.name))")
            print("meta \(config.meta.algorithm.rawValue): \(config.meta.iterations) iterations × \(config.meta.metaBatch) tasks of \(config.family.kindName), \(config.innerLoop.budget) DQN steps each\(config.meta.isPipelined ? ", pipelined (iteration t adapts θ_{t−1})" : "")")
            // What the coordinator will write into coordinator.endpoint (with the port it binds, when the bind says `*`).
            print("coordinator binds \(config.coordinator.bind), workers connect to \(Coordinator.advertisedEndpoint(bound: config.coordinator.bind, advertise: config.coordinator.advertise))")
            print("workers: " + config.workers.map { "\($0.host) ×\($0.count) (\($0.threads) thread(s))" }.joined(separator: ", "))
            print("config hash \(config.hash)")
            if case .gymnasium(let family) = config.family {
                if family.isSwift { try checkSwift(config) } else { try checkGymnasium(config) }
            }
        }
    }

    /// Starts the family once, as a worker would: its spaces, a sample task's parameters, and the server's versions.
    func checkGymnasium(_ config: ClusterConfig) throws {
        let pool = EnvironmentServerPool(options: config.environmentServer)
        let task = try config.task(iteration: 0, slot: 0)
        guard case .gymnasium(let gym) = task else { return }
        do {
            let env = try pool.makeGymnasiumEnvironment(for: gym)
            print("gymnasium \(gym.name): observation \(env.observationSpace) → \(env.observationSize) inputs, action \(env.actionSpace) → \(env.actionCount) actions, \(env.maxEpisodeSteps) steps per episode")
            let drawn = gym.kwargs.merging(gym.attributes.mapKeys { "unwrapped." + $0 }) { a, _ in a }
            print("sample task (iteration 0, slot 0): " + (drawn.isEmpty ? "no parameters" : drawn.keys.sorted().map { "\($0)=\(drawn[$0]!)" }.joined(separator: ", ")) + ", seed \(gym.seed)")
            print("environment server: \(try pool.identity())")
        } catch {
            throw ValidationError("\(path): the gymnasium family does not start with python '\(config.environmentServer.python)': \(error)")
        }
    }
}

extension ConfigCommand {
    /// Makes a Swift family's sample task in this program: its sizes, or why it cannot.
    func checkSwift(_ config: ClusterConfig) throws {
        let task = try config.task(iteration: 0, slot: 0)
        do {
            let env = try task.makeEnvironment()
            print("Swift family \(task.kindName) (\(String(describing: type(of: env)))): \(env.observationSize) inputs, \(env.actionCount) actions, \(env.maxEpisodeSteps) steps per episode")
        } catch {
            throw ValidationError("\(path): \(error)")
        }
    }
}

extension Dictionary {
    fileprivate func mapKeys(_ transform: (Key) -> Key) -> [Key: Value] {
        Dictionary(uniqueKeysWithValues: map { (transform($0.key), $0.value) })
    }
}
