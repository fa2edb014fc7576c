import Environments
import Foundation
import NeuralNet
import Testing

/// The recorded gymnasium 1.4.0 trajectories (copied from shared/fixtures/gymnasium) are the oracle:
/// every step of every trajectory in every file must be reproduced exactly.
@Suite struct GymnasiumFixtureTests {
    struct FixtureFile: Decodable {
        let env_id: String
        let trajectories: [Trajectory]
    }

    struct Trajectory: Decodable {
        let name: String
        let params: [String: ParamValue]
        let initial_state: [Double]
        let initial_observation: [Double]
        let actions: [Int]
        let max_episode_steps: Int
        let steps: [Step]
    }

    struct Step: Decodable {
        let action: Int
        let observation: [Double]
        let state: [Double]
        let reward: Double
        let terminated: Bool
        let truncated: Bool
    }

    enum ParamValue: Decodable {
        case number(Double), text(String), list([Double])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let d = try? c.decode(Double.self) { self = .number(d) }
            else if let l = try? c.decode([Double].self) { self = .list(l) }
            else { self = .text(try c.decode(String.self)) }
        }
        var number: Double? { if case .number(let d) = self { return d } else { return nil } }
    }

    static func fixtureURLs() throws -> [URL] {
        let folder = try #require(Bundle.module.url(forResource: "Fixtures/gymnasium", withExtension: nil))
        return try FileManager.default.contentsOfDirectory(at: folder, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "json" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    static func environment(envID: String, _ t: Trajectory) throws -> any Environment {
        func p(_ key: String) throws -> Double { try #require(t.params[key]?.number, "missing \(key)") }
        switch envID {
        case "CartPole-v1":
            return try CartPole(CartPoleParameters(
                gravity: p("gravity"), massCart: p("masscart"), massPole: p("masspole"), length: p("length"),
                forceMagnitude: p("force_mag"), maxEpisodeSteps: t.max_episode_steps))
        case "Acrobot-v1":
            #expect(try p("g") == 9.8 && p("dt") == 0.2)
            return try Acrobot(AcrobotParameters(
                linkLength1: p("LINK_LENGTH_1"), linkMass1: p("LINK_MASS_1"), linkMass2: p("LINK_MASS_2"),
                linkCenterOfMass1: p("LINK_COM_POS_1"), linkCenterOfMass2: p("LINK_COM_POS_2"),
                linkMomentOfInertia: p("LINK_MOI"), maxEpisodeSteps: t.max_episode_steps))
        case "MountainCar-v0":
            return try MountainCar(MountainCarParameters(
                force: p("force"), gravity: p("gravity"), maxEpisodeSteps: t.max_episode_steps))
        default:
            Issue.record("no environment for fixture env_id \(envID)")
            throw CancellationError()
        }
    }

    @Test func everyFixtureFileIsPresent() throws {
        let names = try Self.fixtureURLs().map(\.lastPathComponent)
        #expect(names == ["Acrobot-v1.json", "CartPole-v1.json", "MountainCar-v0.json"])
    }

    @Test(arguments: try fixtureURLs())
    func reproducesEveryStep(of url: URL) throws {
        let file = try JSONDecoder().decode(FixtureFile.self, from: Data(contentsOf: url))
        #expect(!file.trajectories.isEmpty)
        for t in file.trajectories {
            var env = try Self.environment(envID: file.env_id, t)
            try env.setState(t.initial_state)
            #expect(env.observation == t.initial_observation.map { Float($0) }, "\(t.name): initial observation")
            #expect(t.actions.count == t.steps.count)
            for (i, step) in t.steps.enumerated() {
                let outcome = env.step(step.action)
                let where_ = "\(file.env_id) \(t.name) step \(i + 1)"
                // Report the first differing step and stop, rather than thousands of follow-on failures.
                guard env.state == step.state else {
                    Issue.record("\(where_): state \(env.state) != recorded \(step.state)")
                    break
                }
                guard env.observation == step.observation.map({ Float($0) }) else {
                    Issue.record("\(where_): observation \(env.observation) != recorded \(step.observation)")
                    break
                }
                #expect(outcome.reward == step.reward, "\(where_): reward")
                #expect(outcome.terminated == step.terminated, "\(where_): terminated")
                #expect(outcome.truncated == step.truncated, "\(where_): truncated")
            }
        }
    }
}
