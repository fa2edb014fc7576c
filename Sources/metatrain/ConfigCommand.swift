import ArgumentParser
import Cluster
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
            print(config.coordinator.advertise)
        } else {
            print("\(path): valid")
            print("run \(config.run.name), seed \(config.run.seed), folder \((config.run.runDir as NSString).appendingPathComponent(config.run.name))")
            print("meta \(config.meta.algorithm.rawValue): \(config.meta.iterations) iterations × \(config.meta.metaBatch) tasks of \(config.family.kindName), \(config.innerLoop.budget) DQN steps each\(config.meta.isPipelined ? ", pipelined (iteration t adapts θ_{t−1})" : "")")
            print("coordinator binds \(config.coordinator.bind), workers connect to \(config.coordinator.advertise)")
            print("workers: " + config.workers.map { "\($0.host) ×\($0.count) (\($0.threads) thread(s))" }.joined(separator: ", "))
            print("config hash \(config.hash)")
        }
    }
}
