import Cluster
import Environments
import Foundation
import Testing

@Suite struct GymnasiumConfigTests {
    @Test func aGymnasiumFamilyParsesWithEveryDistribution() throws {
        let c = try ClusterConfig.parse("""
            task_family:
              env: gymnasium
              id: LunarLander-v3
              kwargs: {continuous: false, render_mode: rgb_array, seed_offset: 3}
              vary:
                gravity: {uniform: [-11.5, -3.0]}
                wind_power: {log_uniform: [0.5, 20]}
                size: {integer: [5, 8]}
                mode: {choice: [a, true, 2]}
                unwrapped.force_mag: 7.5
              max_episode_steps: 400
            environment_server:
              python: /opt/venv/bin/python
              allow_modules: [my_envs]
              python_path: [envs]
              step_timeout_ms: 2500
            """)
        guard case .gymnasium(let f) = c.family else { Issue.record("not gymnasium: \(c.family)"); return }
        #expect(f.environmentID == "LunarLander-v3" && f.entryPoint == nil && f.maxEpisodeSteps == 400)
        #expect(f.kwargs == ["continuous": .bool(false), "render_mode": .string("rgb_array"), "seed_offset": .int(3)])
        #expect(f.vary["gravity"] == .uniform(ParameterRange(-11.5, -3)) && f.vary["wind_power"] == .logUniform(ParameterRange(0.5, 20)))
        #expect(f.vary["size"] == .integer(lower: 5, upper: 8) && f.vary["unwrapped.force_mag"] == .fixed(.double(7.5)))
        #expect(f.vary["mode"] == .choice([.string("a"), .bool(true), .int(2)]))
        #expect(c.environmentServer.python == "/opt/venv/bin/python" && c.environmentServer.allowedModules == ["my_envs"])
        #expect(c.environmentServer.pythonPath == ["envs"] && c.environmentServer.stepTimeoutMs == 2500)
        // The family is part of what determines θ.
        let other = try ClusterConfig.parse("task_family: {env: gymnasium, id: LunarLander-v3}")
        #expect(c.hash != other.hash)
    }

    @Test func badGymnasiumFamiliesNameTheirKeyAndLine() {
        func error(_ yaml: String) -> String {
            do { _ = try ClusterConfig.parse(yaml); return "parsed" } catch { return "\(error)" }
        }
        #expect(error("task_family: {env: gymnasium}").contains("names exactly one of id"))
        #expect(error("task_family: {env: gymnasium, id: A-v0, entry_point: 'm:f'}").contains("names exactly one of id"))
        #expect(error("task_family:\n  env: gymnasium\n  id: A-v0\n  vary:\n    g: {gaussian: [0, 1]}\n").contains("line 5: 'task_family.vary.g'"))
        #expect(error("task_family:\n  env: gymnasium\n  id: A-v0\n  vary:\n    g: {uniform: [2, 1]}\n").contains("lower bound exceeds"))
        #expect(error("task_family: {env: gymnasium, id: A-v0, kwargs: {x: [1, 2]}}").contains("'task_family.kwargs.x' must be a number"))
        #expect(error("task_family: {env: gymnasium, id: A-v0, gravity: 3}").contains("unknown key 'task_family.gravity'"))
        #expect(error("environment_server: {allow_modules: my_envs}").contains("must be a list of strings"))
        #expect(error("environment_server: {step_timeout_ms: 0}").contains("step_timeout_ms"))
        #expect(error("task_family: {env: pong}").contains("gymnasium"))
    }
}
