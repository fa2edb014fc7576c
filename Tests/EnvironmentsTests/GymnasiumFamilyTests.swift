import Environments
import NeuralNet
import Testing

/// A gymnasium family's per-task draws: in range, of the declared kind, a pure function of the generator.
@Suite struct GymnasiumFamilyTests {
    static let family = GymnasiumFamily(
        environmentID: "LunarLander-v3", kwargs: ["continuous": .bool(false)],
        vary: ["gravity": .uniform(ParameterRange(-11.5, -3)), "wind_power": .logUniform(ParameterRange(0.5, 20)),
               "size": .integer(lower: 5, upper: 8), "mode": .choice([.string("a"), .string("b")]),
               "unwrapped.force_mag": .uniform(ParameterRange(5, 15)), "fixed": .fixed(.int(3))])

    @Test func drawsStayInTheirDistributionsAndAttributesAreSeparate() throws {
        var rng = SeededRNG(seed: 4)
        var sizes = Set<Int64>(), modes = Set<GymValue>()
        for _ in 0..<400 {
            guard case .gymnasium(let t) = try TaskFamily.gymnasium(Self.family).sample(using: &rng) else { Issue.record("not gymnasium"); return }
            guard case .double(let g)? = t.kwargs["gravity"], case .double(let w)? = t.kwargs["wind_power"],
                  case .int(let s)? = t.kwargs["size"], let mode = t.kwargs["mode"], case .double(let f)? = t.attributes["force_mag"] else {
                Issue.record("missing or mistyped draws in \(t)"); return
            }
            #expect((-11.5...(-3)).contains(g) && (0.5...20).contains(w) && (5...15).contains(f))
            sizes.insert(s); modes.insert(mode)
            #expect(t.kwargs["fixed"] == .int(3) && t.kwargs["continuous"] == .bool(false) && t.attributes.count == 1)
        }
        #expect(sizes == [5, 6, 7, 8] && modes == [.string("a"), .string("b")])
    }

    @Test func theSameGeneratorGivesTheSameTasks() throws {
        var a = SeededRNG(seed: 11), b = SeededRNG(seed: 11)
        let family = TaskFamily.gymnasium(Self.family)
        let first = try (0..<20).map { _ in try family.sample(using: &a) }
        let second = try (0..<20).map { _ in try family.sample(using: &b) }
        #expect(first == second && Set(first.map { "\($0)" }).count == 20)
    }

    @Test func coordinatesScaleTheRangedParameters() throws {
        var rng = SeededRNG(seed: 2)
        let task = try TaskFamily.gymnasium(Self.family).sample(using: &rng)
        let coordinates = TaskFamily.gymnasium(Self.family).coordinates(of: task)
        #expect(coordinates.count == 4 && coordinates.allSatisfy { (0...1).contains($0) })
    }

    @Test func invalidFamiliesAreRefusedWithTheirReason() {
        func reason(_ f: GymnasiumFamily) -> String {
            do { try TaskFamily.gymnasium(f).validate(); return "valid" } catch { return "\(error)" }
        }
        #expect(reason(GymnasiumFamily()).contains("exactly one of 'id' and 'entry_point'"))
        #expect(reason(GymnasiumFamily(entryPoint: "no_function")).contains("package.module:function"))
        #expect(reason(GymnasiumFamily(environmentID: "A-v0", vary: ["x": .logUniform(ParameterRange(0, 1))])).contains("> 0"))
        #expect(reason(GymnasiumFamily(environmentID: "A-v0", vary: ["x": .uniform(ParameterRange(2, 1))])).contains("lower bound exceeds"))
        #expect(reason(GymnasiumFamily(environmentID: "A-v0", vary: ["x": .choice([])])).contains("choice needs"))
        #expect(reason(GymnasiumFamily(environmentID: "A-v0", kwargs: ["x": .int(1)], vary: ["x": .fixed(.int(2))])).contains("both in kwargs and in vary"))
        #expect(reason(GymnasiumFamily(environmentID: "A-v0", maxEpisodeSteps: 0)).contains("max_episode_steps"))
    }

    @Test func withoutAnEnvironmentServerAGymnasiumTaskSaysWhatIsMissing() {
        ExternalEnvironments.install(nil)
        #expect(throws: EnvironmentError.noEnvironmentServer("CartPole-v1")) {
            _ = try TaskSpec.gymnasium(GymnasiumTask(environmentID: "CartPole-v1")).makeEnvironment()
        }
    }
}
