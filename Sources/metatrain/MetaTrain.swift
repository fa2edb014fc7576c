import ArgumentParser

@main
struct MetaTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metatrain",
        abstract: "Meta-trains DQN agents: a fast deterministic DQN inner loop, task families and benchmarks.",
        subcommands: [Train.self, Bench.self]
    )
}
