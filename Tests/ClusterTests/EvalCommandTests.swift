import Foundation
import Testing

/// `metatrain eval` and the coordinator's periodic meta-evaluation, run as real processes.
@Suite(.serialized) struct EvalCommandTests {
    static let configText = """
    run:
      name: evalproc
      seed: 3
      checkpoint_interval: 2
    meta:
      algorithm: reptile
      iterations: 3
      meta_batch: 2
    task_family:
      env: goal_navigation
    inner_loop:
      budget: 200
      hidden_layers: [16, 16]
      batch_size: 16
      learning_starts: 50
      buffer_capacity: 500
    evaluation:
      tasks: 2
      budget: 100
      interval: 2
    """

    static func run(_ arguments: [String], folder: String) throws -> (Int32, String) {
        let child = try Harness.Child(arguments, log: (folder as NSString).appendingPathComponent("cmd-\(UUID().uuidString).log"))
        let status = child.wait(seconds: 300) ?? -1
        return (status, child.output)
    }

    /// `eval --split validation --tune GRID` (issue 36): every (init, grid point) pair is scored on the validation
    /// tasks, a screening round keeps each init's best --tune-keep points, the best of the full round becomes the
    /// init's protocol (in the report's `adaptation`), and the grid, the scores and the choice are in the JSON. And the
    /// multi-task snapshot chosen by adaptation speed on validation tasks (multitask-fastest), with every score.
    @Test func tunesEachInitsProtocolOnValidationTasks() throws {
        let folder = Harness.folder("evaltune")
        let config = Harness.writeConfig(folder, Self.configText)
        let run = (folder as NSString).appendingPathComponent("run")
        let (trained, trainLog) = try Self.run(["local", "--config", config, "--run-dir", run, "--workers", "1", "--no-eval"], folder: folder)
        #expect(trained == 0, "\(trainLog.suffix(2000))")
        let tune = ["--tune", "start_epsilon=1,0.2 ez_max_repeat=0,4", "--tune-screen", "1", "--tune-keep", "2",
                    "--inits", "meta,random", "--tasks", "2", "--budget", "200", "--every", "50", "--episodes", "1",
                    "--target=-40", "--threads", "2", "--json"]
        let (refused, why) = try Self.run(["eval", "--checkpoint", run] + tune, folder: folder)
        #expect(refused != 0 && why.contains("--tune tunes on validation tasks only"), "\(why.suffix(800))")

        let (status, output) = try Self.run(["eval", "--checkpoint", run, "--split", "validation"] + tune, folder: folder)
        #expect(status == 0, "\(output.suffix(2000))")
        let line = output.split(separator: "\n").last { $0.hasPrefix("{") } ?? ""
        let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
        let tuning = try #require(object["tuning"] as? [String: Any], "\(output.suffix(2000))")
        let rounds = try #require(tuning["rounds"] as? [[String: Any]])
        #expect(rounds.map { $0["tasks"] as? Int } == [1, 2])
        let screened = rounds[0]["inits"] as? [String: [[String: Any]]] ?? [:], full = rounds[1]["inits"] as? [String: [[String: Any]]] ?? [:]
        #expect(screened["meta"]?.count == 4 && screened["random"]?.count == 4, "every point screened: \(screened)")
        #expect(full["meta"]?.count == 2 && full["random"]?.count == 2, "the best 2 of each init go on: \(full)")
        let chosen = try #require(tuning["chosen"] as? [String: [String: Double]])
        let adaptation = try #require(object["adaptation"] as? [String: [String: Any]])
        for name in ["meta", "random"] {
            let best = try #require(full[name]?.first?["setting"] as? [String: Double])
            #expect(chosen[name] == best, "\(name): the choice is the full round's best")
            #expect(adaptation[name]?["start_epsilon"] as? Double == best["start_epsilon"]
                    && (adaptation[name]?["ez_max_repeat"] as? Int).map(Double.init) == best["ez_max_repeat"],
                    "\(name) is scored with its chosen protocol: \(adaptation[name] ?? [:])")
        }
        let arguments = tuning["arguments"] as? [String] ?? []
        #expect(arguments.count == 2 && arguments[0].hasPrefix("--start-epsilon meta=") && arguments[1].hasPrefix("--ez-max-repeat meta="), "\(arguments)")

        // multitask-fastest: every multi-task snapshot adapted on validation tasks, the fastest kept and named.
        let (picked, pickedText) = try Self.run(["eval", "--checkpoint", run, "--inits", "random,multitask-fastest", "--multitask-steps", "400",
                                                 "--snapshot-tasks", "2", "--tasks", "2", "--budget", "200", "--every", "50", "--episodes", "1",
                                                 "--target=-40", "--threads", "2", "--json"], folder: folder)
        #expect(picked == 0, "\(pickedText.suffix(2000))")
        let report = (try? JSONSerialization.jsonObject(with: Data((pickedText.split(separator: "\n").last { $0.hasPrefix("{") } ?? "").utf8))) as? [String: Any] ?? [:]
        let selection = try #require(report["multitask_fastest"] as? [String: Any], "\(pickedText.suffix(1500))")
        let listed = selection["snapshots"] as? [[String: Any]] ?? []
        #expect(listed.count == 20 && selection["validation_tasks"] as? Int == 2, "\(selection)")
        #expect(listed.contains { $0["step"] as? Int == selection["chosen_step"] as? Int }, "\(selection)")
        #expect((report["inits"] as? [String: Any])?["multitask-fastest"] != nil)
    }

    @Test func trainsThenEvaluatesAllFourInitsFromTheRunFolder() throws {
        let folder = Harness.folder("eval")
        let config = Harness.writeConfig(folder, Self.configText)
        let run = (folder as NSString).appendingPathComponent("run")
        // --seed overrides the file: the run's config.yaml must say so, or eval would refuse the checkpoint.
        let (trained, trainLog) = try Self.run(["local", "--config", config, "--run-dir", run, "--workers", "1", "--no-eval", "--seed", "5"], folder: folder)
        #expect(trained == 0, "\(trainLog.suffix(2000))")

        // The coordinator evaluated θ while training: at 0, at 2 (interval 2) unless iteration 3 came first
        // while 0's evaluation still ran (a loaded machine), and at the final 3, which is not due but always
        // evaluated.
        let periodic = (try? String(contentsOfFile: run + "/eval.jsonl", encoding: .utf8)) ?? ""
        let iterations = periodic.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }.compactMap { $0["iteration"] as? Int }
        #expect(iterations.first == 0 && iterations.last == 3 && iterations == iterations.sorted() && Set(iterations).count == iterations.count,
                "eval.jsonl: \(periodic)")
        // status.json carries the newest meta-eval too (what `status tcp://` shows without the run folder).
        let (shown, statusText) = try Self.run(["status", run], folder: folder)
        #expect(shown == 0 && statusText.contains("last meta-eval (iteration 3)"), "\(statusText.suffix(1000))")
        // Watching training never scores the held-out test tasks.
        #expect(!periodic.isEmpty && periodic.split(separator: "\n").allSatisfy { $0.contains("\"split\": \"validation\"") }, "eval.jsonl: \(periodic)")

        let (status, output) = try Self.run(
            ["eval", "--checkpoint", run, "--tasks", "2", "--budget", "200", "--every", "100", "--episodes", "1",
             "--library", "2", "--multitask-steps", "300", "--threads", "2", "--json"], folder: folder)
        #expect(status == 0, "\(output.suffix(2000))")
        let line = output.split(separator: "\n").first { $0.hasPrefix("{") } ?? ""
        let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] ?? [:]
        #expect(object["family"] as? String == "goal_navigation")
        #expect(object["budget"] as? Int == 200 && object["every"] as? Int == 100 && object["tasks"] as? Int == 2)
        let inits = object["inits"] as? [String: [[String: Any]]] ?? [:]
        #expect(Set(inits.keys) == ["meta", "random", "multitask", "nearest"])
        #expect(inits.values.allSatisfy { $0.map { $0["step"] as? Int } == [0, 100, 200] })
        #expect(object["steps_to_target"] is [String: Any] && object["retrieval_distance"] is [String: Any])
        for suffix in [".csv", "-tasks.csv", ".svg", ".json", ".md"] {
            #expect(FileManager.default.fileExists(atPath: run + "/eval-iter000003" + suffix), "missing eval-iter000003\(suffix)")
        }

        // Validation tasks, with per-init adaptation settings stated in the report; the multitask init comes from the cache.
        let (vStatus, vOutput) = try Self.run(
            ["eval", "--checkpoint", run, "--tasks", "2", "--budget", "200", "--every", "100", "--episodes", "1",
             "--inits", "meta,random,multitask,multitask-head", "--multitask-steps", "300", "--split", "validation",
             "--start-epsilon", "0.5,meta=0.1", "--learning-starts", "random=50", "--gamma", "meta=0.9", "--optimizer", "sgd", "--json"], folder: folder)
        #expect(vStatus == 0 && vOutput.contains("reusing"), "\(vOutput.suffix(2000))")
        #expect(vOutput.contains("eval batch 1: 8 of 8 jobs done (100%)"), "a long evaluation reports its progress: \(vOutput.suffix(2000))")
        let vLine = vOutput.split(separator: "\n").first { $0.hasPrefix("{") } ?? ""
        let validation = (try? JSONSerialization.jsonObject(with: Data(vLine.utf8))) as? [String: Any] ?? [:]
        #expect(validation["split"] as? String == "validation")
        // The multi-task network under θ₀'s output layer (issue 36's baseline) is adapted as an init of its own.
        #expect((validation["inits"] as? [String: Any])?["multitask-head"] != nil, "\(vLine.prefix(600))")
        let adaptation = validation["adaptation"] as? [String: [String: Any]] ?? [:]
        #expect(adaptation["meta"]?["start_epsilon"] as? Double == 0.1 && adaptation["random"]?["start_epsilon"] as? Double == 0.5)
        #expect(adaptation["random"]?["learning_starts"] as? Int == 50 && adaptation["multitask"]?["start_epsilon"] as? Double == 0.5)
        #expect(["meta", "random", "multitask"].allSatisfy { adaptation[$0]?["optimizer"] as? String == "sgd" }, "--optimizer reaches every init")
        #expect(adaptation["meta"]?["gamma"] as? Double == 0.9 && (adaptation["random"]?["gamma"] as? Double).map { $0 != 0.9 } == true,
                "--gamma meta=… reaches meta alone")
        #expect(FileManager.default.fileExists(atPath: run + "/eval-iter000003-validation.json"))
        let (badInit, badText) = try Self.run(["eval", "--checkpoint", run, "--start-epsilon", "metta=0.1"], folder: folder)
        #expect(badInit != 0 && badText.contains("not an init"), "\(badText.suffix(500))")
        // A bad value found while running is its one line of error, exit 64, without the usage screen (issue 38).
        #expect(badInit == 64 && !badText.contains("Usage:"), "\(badText.suffix(500))")
        let (badGamma, badGammaText) = try Self.run(["eval", "--checkpoint", run, "--gamma", "random=1.5"], folder: folder)
        #expect(badGamma != 0 && badGammaText.contains("gamma"), "\(badGammaText.suffix(500))")
        let (badOptimizer, badOptimizerText) = try Self.run(["eval", "--checkpoint", run, "--optimizer", "rmsprop"], folder: folder)
        #expect(badOptimizer != 0 && badOptimizerText.contains("adam or sgd"), "\(badOptimizerText.suffix(500))")

        // `compare` pools runs like these (here the one test run twice) and checks pre-registered thresholds.
        let compared = (folder as NSString).appendingPathComponent("compared")
        let file = run + "/eval-iter000003.json"
        let (cStatus, cOutput) = try Self.run(["compare", file, file, "--baselines", "random", "--resamples", "200",
                                               "--require-ratio", "1000", "--require-seed-ci-low", "1.5",
                                               "--require-censored-at-most", "1", "--out", compared, "--json"], folder: folder)
        #expect(cStatus == 0, "\(cOutput.suffix(2000))")
        let comparison = (try? JSONSerialization.jsonObject(with: Data((cOutput.split(separator: "\n").last ?? "").utf8))) as? [String: Any] ?? [:]
        #expect((comparison["runs"] as? [Any])?.count == 2 && (comparison["ratios"] as? [String: Any])?["random"] != nil)
        #expect(((comparison["runs"] as? [[String: Any]])?.first?["kernel"] as? String)?.isEmpty == false, "the kernel is recorded")
        #expect((comparison["criteria"] as? [[String: Any]])?.first?["met"] as? Bool == false)
        // Seed-level statistics (issue 36): each seed's ratio of medians, and the censored fraction per init.
        let seedLevel = (comparison["seed_level_ratios"] as? [String: Any])?["random"] as? [String: Any]
        #expect((seedLevel?["per_seed"] as? [Any])?.count == 2 && seedLevel?["geometric_mean_t"] != nil)
        #expect((comparison["censored"] as? [String: Any])?["meta"] != nil)
        #expect((comparison["criteria"] as? [[String: Any]])?.count == 3, "ratio, seed-level CI and censored fraction")
        #expect((comparison["criteria"] as? [[String: Any]])?.last?["met"] as? Bool == true, "at most 100% censored holds")
        for suffix in [".md", ".csv", ".json", ".svg"] {
            #expect(FileManager.default.fileExists(atPath: compared + "/compare" + suffix), "missing compare\(suffix)")
        }
        let (mixed, mixedText) = try Self.run(["compare", file, run + "/eval-iter000003-validation.json"], folder: folder)
        #expect(mixed != 0 && mixedText.contains("only like runs pool"), "\(mixedText.suffix(500))")
        #expect(!mixedText.contains("Usage:"), "an error is its own line, without the usage screen (issue 38)")
    }

    @Test func refusesAConfigurationTheCheckpointWasNotTrainedWith() throws {
        let folder = Harness.folder("evalbad")
        let config = Harness.writeConfig(folder, Self.configText.replacingOccurrences(of: "  interval: 2", with: "  interval: 0"))
        let run = (folder as NSString).appendingPathComponent("run")
        let (trained, log) = try Self.run(["local", "--config", config, "--run-dir", run, "--workers", "1", "--no-eval"], folder: folder)
        #expect(trained == 0, "\(log.suffix(2000))")
        let other = (folder as NSString).appendingPathComponent("other.yaml")
        _ = FileManager.default.createFile(atPath: other, contents: Data(Self.configText.replacingOccurrences(of: "seed: 3", with: "seed: 4").utf8))
        let (status, output) = try Self.run(["eval", "--checkpoint", run, "--config", other, "--tasks", "1", "--budget", "100"], folder: folder)
        #expect(status != 0 && output.contains("not the configuration"), "\(output.suffix(1000))")

        let garbage = (folder as NSString).appendingPathComponent("garbage.mtck")
        _ = FileManager.default.createFile(atPath: garbage, contents: Data("not a checkpoint".utf8))
        let (status2, output2) = try Self.run(["eval", "--checkpoint", garbage, "--config", config], folder: folder)
        #expect(status2 != 0 && output2.contains("error") && !output2.contains("Fatal error"), "\(output2.suffix(1000))")

        let (status3, output3) = try Self.run(["eval", "--checkpoint", run, "--budget", "100", "--every", "30"], folder: folder)
        #expect(status3 != 0 && output3.contains("must divide"), "\(output3.suffix(1000))")

        let (status4, output4) = try Self.run(["eval", "--checkpoint", run, "--budget", "200", "--every", "100", "--probe-steps", "150"], folder: folder)
        #expect(status4 != 0 && output4.contains("--probe-steps") && !output4.contains("pretraining"), "\(output4.suffix(1000))")
    }

    // MARK: - On the cluster's workers

    /// The shared config with a fast-failing coordinator on a free local port and no periodic eval.
    static let clusterConfigText = configText.replacingOccurrences(of: "  interval: 2", with: "  interval: 0") + """

    coordinator:
      bind: tcp://127.0.0.1:*
      heartbeat_interval_ms: 200
      liveness: 3
    """

    static let evalArguments = ["--tasks", "3", "--budget", "200", "--every", "100", "--episodes", "1", "--library", "2",
                                "--multitask-steps", "300", "--json"]

    /// The JSON object a finished `metatrain eval --json` printed, without its wall-clock seconds.
    static func report(_ output: String) -> NSDictionary? {
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("{") }),
              let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
        var trimmed = object
        trimmed["seconds"] = nil
        return trimmed as NSDictionary
    }

    /// Trains a short run, evaluates it on local threads, and serves it with `coordinator --serve`:
    /// (folder, run folder, local report, coordinator, endpoint).
    static func servedRun(_ name: String) throws -> (String, String, NSDictionary, Harness.Child, String) {
        let folder = Harness.folder(name)
        let config = Harness.writeConfig(folder, clusterConfigText)
        let run = (folder as NSString).appendingPathComponent("run")
        let (trained, trainLog) = try Self.run(["local", "--config", config, "--run-dir", run, "--workers", "1", "--no-eval"], folder: folder)
        #expect(trained == 0, "\(trainLog.suffix(2000))")
        let (status, output) = try Self.run(["eval", "--checkpoint", run, "--threads", "2", "--out", folder + "/local"] + evalArguments, folder: folder)
        guard status == 0, let local = report(output) else {
            Issue.record("local eval failed: \(output.suffix(2000))")
            throw CancellationError()
        }
        try? FileManager.default.removeItem(atPath: run + "/coordinator.endpoint")
        let (coordinator, endpoint) = try Harness.startCoordinator(run, config: config, extra: ["--resume", run, "--serve"])
        return (folder, run, local, coordinator, endpoint)
    }

    @Test func evaluatesOnTheClusterWorkersWithTheLocalNumbersThoughAWorkerIsKilledMidJob() throws {
        let (folder, run, local, coordinator, endpoint) = try Self.servedRun("evalcluster")
        // The victim joins first, so it gets the first eval job; it idles 300× its compute time after
        // each job, so it still holds the job when it is SIGKILLed.
        let victim = try Harness.worker(folder, endpoint: endpoint, index: 1, extra: ["--slowdown", "300"])
        #expect(Harness.waitFor(seconds: 30) { coordinator.output.contains("1 alive") })
        let healthy = try Harness.worker(folder, endpoint: endpoint, index: 2, threads: 2)
        #expect(Harness.waitFor(seconds: 30) { coordinator.output.contains("2 alive") })

        let client = try Harness.Child(["eval", "--checkpoint", run, "--coordinator", endpoint, "--out", folder + "/cluster"] + Self.evalArguments,
                                       log: folder + "/client.log")
        // The coordinator hands out jobs as it logs the request, so the victim holds one from here on (in flight
        // or computing): killing it now must requeue it, however loaded the machine.
        #expect(Harness.waitFor(seconds: 60) { coordinator.output.contains("job(s); 2 worker(s) alive") })
        victim.signal(SIGKILL)
        let status = client.wait(seconds: 180)
        #expect(status == 0, "\(client.output.suffix(2000))")
        #expect(Self.report(client.output) == local, "the cluster's report differs from the local one:\n\(client.output.suffix(1500))")
        #expect(coordinator.output.contains("1 eval job(s) requeued"), "\(coordinator.output.suffix(2000))")
        #expect(client.output.contains("on the workers of \(endpoint)"))

        // --serve ends on a signal, with a goodbye to the workers.
        coordinator.signal(SIGTERM)
        #expect(coordinator.wait(seconds: 30) == 0, "\(coordinator.output.suffix(1000))")
        #expect(healthy.wait(seconds: 30) == 0)
    }

    @Test func anEvalClientSurvivesACoordinatorKilledAndRestartedMidRequest() throws {
        let (folder, run, local, first, endpoint) = try Self.servedRun("evalrestart")
        // Slow enough (100× per job) that the request is still running when the coordinator dies, even when the
        // machine is loaded (at 50× a busy machine once saw the request finish between the check and the kill).
        let worker = try Harness.worker(folder, endpoint: endpoint, index: 1, threads: 2, extra: ["--slowdown", "100"])
        #expect(Harness.waitFor(seconds: 30) { first.output.contains("1 alive") })
        // `metatrain status` asks the running coordinator itself, over its socket.
        let (asked, answer) = try Self.run(["status", endpoint, "--json"], folder: folder)
        let remote = (try? JSONSerialization.jsonObject(with: Data((answer.split(separator: "\n").last ?? "").utf8))) as? [String: Any] ?? [:]
        #expect(asked == 0 && (remote["workers"] as? [Any])?.count == 1 && remote["state"] as? String == "training finished",
                "\(answer.suffix(1000))")
        let (readable, text) = try Self.run(["status", endpoint], folder: folder)
        #expect(readable == 0 && text.contains("workers: 1"), "\(text.suffix(1000))")
        let client = try Harness.Child(["eval", "--checkpoint", run, "--coordinator", endpoint, "--out", folder + "/cluster"] + Self.evalArguments,
                                       log: folder + "/client.log")
        // Past the library batch and into the next request: the coordinator hands the second batch's jobs out as it
        // logs their request ("…-b2-s1 numbered"), so kill it then, mid-request, however fast or loaded the machine.
        #expect(Harness.waitFor(seconds: 60) { first.output.contains("-b2-s1 numbered") }, "\(first.output.suffix(2000))")
        first.signal(SIGKILL)
        first.wait(seconds: 10)
        // The same endpoint, so the worker and the client find the new coordinator by themselves.
        let second = try Harness.coordinator(run, config: folder + "/cluster.yaml", extra: ["--resume", run, "--serve", "--bind", endpoint])
        let status = client.wait(seconds: 180)
        #expect(status == 0, "\(client.output.suffix(2000))")
        #expect(Self.report(client.output) == local, "the report after a coordinator restart differs from the local one:\n\(client.output.suffix(1500))")
        #expect(client.output.contains("submitting the"), "the client never resubmitted: \(client.output.suffix(1500))")
        second.signal(SIGTERM)
        #expect(second.wait(seconds: 30) == 0, "\(second.output.suffix(1000))")
        #expect(worker.wait(seconds: 30) == 0)
    }

    @Test func anEvalClientGivesUpWhenNoCoordinatorAnswers() throws {
        let folder = Harness.folder("evalnobody")
        let config = Harness.writeConfig(folder, Self.clusterConfigText)
        let run = (folder as NSString).appendingPathComponent("run")
        let (trained, trainLog) = try Self.run(["local", "--config", config, "--run-dir", run, "--workers", "1", "--no-eval"], folder: folder)
        #expect(trained == 0, "\(trainLog.suffix(2000))")
        let (status, output) = try Self.run(["eval", "--checkpoint", run, "--coordinator", "tcp://127.0.0.1:9", "--coordinator-timeout", "2",
                                             "--inits", "meta", "--tasks", "1", "--budget", "100"], folder: folder)
        #expect(status != 0 && output.contains("no coordinator answered at tcp://127.0.0.1:9"), "\(output.suffix(1000))")
        let (asked, answer) = try Self.run(["status", "tcp://127.0.0.1:9", "--timeout", "1"], folder: folder)
        #expect(asked != 0 && answer.contains("no answer from a coordinator at tcp://127.0.0.1:9"), "\(answer.suffix(1000))")
    }
}
