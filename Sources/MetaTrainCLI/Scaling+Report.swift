import CapacityModel
import ArgumentParser
import Cluster
import Foundation

extension Scaling {
    /// Model vs measured on this machine, then predictions for 1 … 1,024 workers: scaling.md, scaling.json, scaling.svg.
    struct Report: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the model against measured runs (capacity.json, runs.json) and predict 1…1,024 workers (markdown, JSON, SVG).")
        @Option(help: "Costs from `metatrain scaling calibrate`.") var costs: String
        @Option(help: "scripts/capacity.sh's capacity.json (instant workers).") var capacity: String
        @Option(help: "Real-compute runs (scripts/scaling.sh's runs.json).") var runs: String
        @Option(help: "Cores' worth of parallel compute of the machine the runs shared (default: the calibrated parallelCompute).") var cores: Double?
        @Option(help: "Predictions: the coordinator's link, Gbit/s each way.") var linkGbit = 10.0
        @Option(help: "Predictions: one-way latency, µs.") var latencyUs = 100.0
        @Option(help: "Predictions: median seconds of a reference slot (2,000 steps) with the small θ.") var slotSecondsSmall: Double
        @Option(help: "Predictions: the same with the 1M-float θ.") var slotSecondsLarge: Double
        @Option(help: "Predictions: log-standard deviation of slot times (default: the runs' fitted spread).") var slotSpread: Double?
        @Option(help: "Fit the costs to the instant runs with this many workers (default 8 where measured, else the busiest count).") var fitWorkers: Int?
        @Option(help: "Folder for scaling.md, scaling.json, scaling.svg.") var out: String

        /// A measured run beside the model's prediction for it (scaling.json's "validation").
        struct Checked: Codable {
            let kind: String
            let thetaFloats: Int, workers: Int, metaBatch: Int
            let measuredSeconds: Double, predictedSeconds: Double, error: Double
            let bottleneck: String
            let fitted: Bool
            /// The model given this run's own measured CPU per slot (coordinator and workers) instead of the fitted
            /// costs, where the run measured both: a check of the simulation's structure (queues, barrier, shared
            /// cores) apart from how costs carry from one run to another.
            let ownCPUSeconds: Double?
            let ownCPUError: Double?
        }

        /// One predicted cluster (scaling.json's "predictions").
        struct Predicted: Codable {
            let thetaFloats: Int, workers: Int, metaBatch: Int, slotsPerWorker: Int
            /// Pipelined meta-iterations (`meta.pipeline: true`): the next iteration's slots run during this one's tail.
            let pipelined: Bool
            let iterationSeconds: Double, efficiency: Double
            let coordinatorBusy: Double, coordinatorIOBusy: Double, linkOutBusy: Double, linkInBusy: Double
            let bottleneck: String
        }

        /// Efficiency at `sensitivityWorkers` workers (θ 5k) with one slot-time spread (scaling.json's "spread_sensitivity").
        struct SpreadRow: Codable {
            let slotSpread: Double, slotsPerWorker: Int, pipelined: Bool, workers: Int, efficiency: Double
            /// Whether this is the spread the predictions above use (the measured one).
            let measured: Bool
        }

        /// scaling.json.
        struct Output: Codable {
            let costsAsUsed: ScalingModel.Costs
            let validation: [Checked], predictions: [Predicted]
            let spreadSensitivity: [SpreadRow]
            let linkGbit: Double, latencyUs: Double, slotSecondsSmall: Double, slotSecondsLarge: Double
            let slotSpread: Double, sharedCores: Double
        }

        /// One measured run: what it ran and its mean apply-to-apply cycle, the window the model predicts.
        struct Measured {
            let kind: String, theta: Int, workers: Int, batch: Int, seconds: Double, workload: ScalingModel.Workload
            /// The coordinator's CPU per slot (getrusage), where the run measured it.
            let coordinatorCPUPerSlot: Double?
            /// Its loop thread's share, where the run measured it (the rest is libzmq's I/O thread).
            let coordinatorLoopCPUPerSlot: Double?
            /// The worker processes' CPU per slot over the same window (each worker's CPU timeline, interpolated at the
            /// window's two updates), where the run measured it.
            let workersCPUPerSlot: Double?
            /// The coordinator's time writing each iteration's record (after the next hand-out).
            let bookkeeping: Double?
        }

        func load(_ path: String, kind: String) throws -> [Measured] {
            guard let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any],
                  let list = object["rows"] as? [[String: Any]] else { throw ValidationError("\(path): no \"rows\" list") }
            return try list.map { row in
                guard let theta = row["theta_floats"] as? Int, let workers = row["workers"] as? Int,
                      let batch = row["meta_batch"] as? Int, let seconds = row["cycle_seconds"] as? Double else {
                    throw ValidationError("\(path): a row lacks theta_floats, workers, meta_batch or cycle_seconds (re-run scripts/capacity.sh or scripts/scaling.sh)")
                }
                var workload = ScalingModel.Workload(thetaFloats: theta, metaBatch: batch, slotSeconds: row["model_slot_seconds"] as? Double ?? 0)
                workload.slotSpread = row["model_slot_spread"] as? Double ?? 0
                workload.iterations = kind == "instant" ? 8 : 4
                return Measured(kind: kind, theta: theta, workers: workers, batch: batch, seconds: seconds, workload: workload,
                                coordinatorCPUPerSlot: (row["coordinator_cpu_us_per_slot"] as? Double).map { $0 * 1e-6 },
                                coordinatorLoopCPUPerSlot: (row["coordinator_loop_cpu_us_per_slot"] as? Double).map { $0 * 1e-6 },
                                workersCPUPerSlot: (row["workers_cpu_us_per_slot"] as? Double).map { $0 * 1e-6 },
                                bookkeeping: row["bookkeeping_seconds_per_iteration"] as? Double)
            }
        }

        func run() throws {
            var measuredCosts = try Scaling.loadCosts(costs)
            let shared = cores ?? measuredCosts.parallelCompute
            let measuredRuns = try load(capacity, kind: "instant") + load(runs, kind: "train")
            // The runs the model is fitted to, all with instant workers, where message handling is nearly all of the time.
            // (1) One worker count (`--fit-workers`; by default 8, the fewest of scripts/capacity.sh's counts that keep the
            // coordinator busy — the busiest count, which was the rule before, moved between 8 and 64 with the machine's
            // phase, and 64 processes on 2 cores charge the fit contention that the predictions' one core per worker does
            // not have; without 8-worker runs, the busiest count, the highest slots/s at the smallest θ), at every θ size:
            // the line through the smallest θ's run and each larger one's (`fit`). Microbenchmarks understate the
            // per-message costs (they cannot see a loop woken for every message) and vary by a factor of 1.7 on the per-byte
            // ones from run to run; an idler run's CPU includes its idle polling. (2) One worker at the smallest θ, where
            // slots go one after another: the workers' turnaround, from its cycle. Every other run checks the model, all
            // in one window: the apply-to-apply cycle, which the CPU figures (differences over whole cycles) also cover.
            let instant = measuredRuns.filter { $0.kind == "instant" }
            let smallest = instant.map(\.theta).min()
            let single = instant.first { $0.theta == smallest && $0.workers == 1 }
            let batch = single?.batch
            let candidates = instant.filter { $0.theta == smallest && $0.batch == batch }
            let fitCount = fitWorkers ?? (candidates.contains { $0.workers == 8 } ? 8
                : candidates.max { Double($0.batch) / $0.seconds < Double($1.batch) / $1.seconds }?.workers)
            if let fitWorkers, !candidates.contains(where: { $0.workers == fitWorkers }) {
                throw ValidationError("--fit-workers \(fitWorkers): \(capacity) has no instant run with \(fitWorkers) workers at θ \(smallest ?? 0)")
            }
            var fitted: [(theta: Int, workers: Int, what: String)] = []
            let line = instant.filter { $0.workers == fitCount && $0.batch == batch && $0.coordinatorCPUPerSlot != nil }
                .sorted { $0.theta < $1.theta }
            // Costs per θ size: each calibrated size's through the smallest θ's run and its own, so that a message's
            // per-byte cost is the one measured at its size (a 270 KB result costs about half as much per byte as a 4 MB
            // one: caches); the predictions use the line through the smallest and the largest, as before.
            var costsByTheta: [Int: ScalingModel.Costs] = [:]
            if let low = line.first, let high = line.last, high.theta > low.theta {
                let microbenchmarked = measuredCosts
                measuredCosts = Self.fit(low, high, microbenchmarked)
                for m in line.dropFirst() { costsByTheta[m.theta] = Self.fit(low, m, microbenchmarked) }
                for m in line { fitted.append((m.theta, m.workers, "fits the per-message, per-byte and bookkeeping costs")) }
            }
            if let single {
                measuredCosts.workerTurnaround = try Self.turnaround(single, Self.onOneMachine(measuredCosts), sharedCores: shared)
                for theta in costsByTheta.keys { costsByTheta[theta]!.workerTurnaround = measuredCosts.workerTurnaround }
                fitted.append((single.theta, 1, "fits the turnaround"))
            }
            /// A measured run's costs: those of the smallest calibrated θ at least as large as its own (the largest's
            /// above them); at or below the smallest, the predictions' costs.
            func costsOfRun(theta: Int) -> ScalingModel.Costs {
                let sizes = costsByTheta.keys.sorted()
                guard let size = sizes.first(where: { $0 >= theta }) ?? sizes.last, theta > (line.first?.theta ?? 0) else { return measuredCosts }
                return costsByTheta[size]!
            }
            /// A run's own CPU per slot as the model's costs, on one machine (nil where the run did not measure it).
            func ownCosts(_ m: Measured) -> ScalingModel.Costs? {
                Self.ownCPU(m, costsOfRun(theta: m.theta)).map { Self.onOneMachine($0, loopbackReceive: false) }
            }
            // The model with each run's own CPU per slot gets its own turnaround, fitted to the same one-worker run.
            let ownTurnaround = try single.flatMap { s in try ownCosts(s).map { try Self.turnaround(s, $0, sharedCores: shared) } } ?? 0
            var rows: [Checked] = []
            // Issue 15's bar as docs/prereg/scaling-measured-costs.md registers it: every run but the one the turnaround is
            // fitted to, each instant run charged its own measured CPU per slot, each training run the fitted costs (they
            // measure no CPU per slot; their messages are a few percent of their time).
            var judgedErrors: [Double] = []
            for m in measuredRuns {
                let runCosts = costsOfRun(theta: m.theta)
                let p = try ScalingModel.predict(m.workload, on: ScalingModel.Cluster(workers: m.workers, sharedCores: shared),
                                                 costs: Self.onOneMachine(runCosts))
                let fit = m.kind == "instant" && m.batch == batch ? fitted.first { $0.workers == m.workers && $0.theta == m.theta }?.what : nil
                let own = try ownCosts(m).map { (costs: ScalingModel.Costs) -> Double in
                    var costs = costs
                    costs.workerTurnaround = ownTurnaround
                    return try ScalingModel.predict(m.workload, on: ScalingModel.Cluster(workers: m.workers, sharedCores: shared),
                                                    costs: costs).iterationSeconds
                }
                let error = p.iterationSeconds / m.seconds - 1, ownError = own.map { $0 / m.seconds - 1 }
                let fitsTurnaround = m.kind == "instant" && m.workers == 1 && m.theta == single?.theta && m.batch == single?.batch
                if !fitsTurnaround { judgedErrors.append(abs(ownError ?? error)) }
                rows.append(Checked(kind: fit.map { "instant (\($0))" } ?? m.kind, thetaFloats: m.theta, workers: m.workers,
                                    metaBatch: m.batch, measuredSeconds: m.seconds, predictedSeconds: p.iterationSeconds,
                                    error: error, bottleneck: p.bottleneck, fitted: fit != nil,
                                    ownCPUSeconds: own, ownCPUError: ownError))
            }

            let spread = slotSpread ?? measuredRuns.first { $0.kind == "train" }?.workload.slotSpread ?? 0.05
            var cluster = measuredCosts
            cluster.linkBytesPerSecond = linkGbit * 1e9 / 8
            cluster.latency = latencyUs * 1e-6
            let workerCounts = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
            var grid: [Predicted] = []
            for (theta, slot) in zip(Self.thetaSizes, [slotSecondsSmall, slotSecondsLarge]) {
                for (perWorker, pipelined) in Self.lineKinds {
                    for workers in workerCounts {
                        let batch = max(8, perWorker * workers)
                        // The coordinator holds an iteration's updates until it applies them in slot order: past 8 GiB, no.
                        if batch > 4096 || batch * theta * 4 > 8 << 30 { continue }
                        let workload = Self.workload(theta: theta, metaBatch: batch, slotSeconds: slot, spread: spread, pipelined: pipelined)
                        let p = try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: workers), costs: cluster)
                        let limitedBy = p.efficiency < 0.9 ? try limit(workload, workers: workers, costs: cluster) : "none"
                        grid.append(Predicted(thetaFloats: theta, workers: workers, metaBatch: batch, slotsPerWorker: perWorker, pipelined: pipelined,
                                              iterationSeconds: p.iterationSeconds, efficiency: p.efficiency,
                                              coordinatorBusy: p.coordinatorBusy, coordinatorIOBusy: p.coordinatorIOBusy, linkOutBusy: p.linkOutBusy, linkInBusy: p.linkInBusy,
                                              bottleneck: limitedBy))
                    }
                }
            }
            let sensitivity = try spreadSensitivity(cluster, spread: spread)
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            let output = Output(costsAsUsed: measuredCosts, validation: rows, predictions: grid, spreadSensitivity: sensitivity, linkGbit: linkGbit,
                                latencyUs: latencyUs, slotSecondsSmall: slotSecondsSmall, slotSecondsLarge: slotSecondsLarge,
                                slotSpread: spread, sharedCores: shared)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            try encoder.encode(output).write(to: URL(fileURLWithPath: out + "/scaling.json"))
            try Data(svg(grid).utf8).write(to: URL(fileURLWithPath: out + "/scaling.svg"))
            // The costs after fitting, for `metatrain scaling predict --costs`.
            try Scaling.encoder.encode(measuredCosts).write(to: URL(fileURLWithPath: out + "/costs-fitted.json"))
            let text = markdown(rows, grid, shared: shared) + sensitivityMarkdown(sensitivity)
            try Data(text.utf8).write(to: URL(fileURLWithPath: out + "/scaling.md"))
            print(text)
            let worst = rows.filter { !$0.fitted }.map { abs($0.error) }.max() ?? 0
            print("scaling: worst model error \(String(format: "%.1f", worst * 100))% over the measured runs not fitted to (bar: 20%)")
            if rows.contains(where: { $0.ownCPUError != nil }) {
                let worst = judgedErrors.max() ?? 0
                print("scaling: worst error \(String(format: "%.1f", worst * 100))% over the runs not fitted to, each instant run charged its own measured CPU per slot and each training run the fitted costs (bar: 20%)")
            }
        }

        /// `base` with the per-message, per-byte and bookkeeping costs of the line through two instant runs with the same
        /// workers and meta-batch at two θ sizes (`low` the smaller); `base` where either lacks the coordinator's CPU.
        ///
        /// Through both points: the I/O thread's CPU per slot (the process's less its loop thread's, where the runs
        /// measured it) against the bytes it moves per slot, for its per-message (half the intercept: a slot is a message
        /// in and one out) and per-byte CPU; the bookkeeping per iteration (a fixed part and one per float of θ); the
        /// loop's CPU per slot less that bookkeeping against a result's bytes, for the per-message CPU and the per-byte
        /// CPU of a result; and the worker processes' CPU per slot against the bytes a worker handles per slot (less
        /// what receiving θ costs on one machine, `receivedOnOneMachine`), for the workers' per-message and per-byte CPU.
        static func fit(_ low: Measured, _ high: Measured, _ base: ScalingModel.Costs) -> ScalingModel.Costs {
            guard high.theta > low.theta, var lowCPU = low.coordinatorCPUPerSlot, var highCPU = high.coordinatorCPUPerSlot else { return base }
            var costs = base
            // The received bytes' cost the fit leaves out is the one the simulation charges (`onOneMachine`).
            costs.workerPerReceivedByte = base.workerPerReceivedByte ?? base.workerPerByte
            if let lowLoop = low.coordinatorLoopCPUPerSlot, let highLoop = high.coordinatorLoopCPUPerSlot {
                let (lowIO, highIO) = (lowCPU - lowLoop, highCPU - highLoop)
                let (lowBytes, highBytes) = (ioBytesPerSlot(low), ioBytesPerSlot(high))
                let perByte = max((highIO - lowIO) / (highBytes - lowBytes), 0)
                costs.coordinatorIOPerByte = perByte
                costs.coordinatorIOPerMessage = max((lowIO - perByte * lowBytes) / 2, 0)
                (lowCPU, highCPU) = (lowLoop, highLoop)
            }
            if let lowWriting = low.bookkeeping, let highWriting = high.bookkeeping {
                let perFloat = max((highWriting - lowWriting) / Double(high.theta - low.theta), 0)
                costs.coordinatorPerIterationFloat = perFloat
                costs.coordinatorPerIteration = max(lowWriting - perFloat * Double(low.theta), 0)
                lowCPU -= lowWriting / Double(low.batch)
                highCPU -= highWriting / Double(high.batch)
            }
            let slope = (highCPU - lowCPU) / Double(4 * (high.theta - low.theta))
            costs.coordinatorPerResultByte = max(slope, 0)
            costs.coordinatorPerMessage = max((lowCPU - slope * Double(4 * low.theta)) / 2, 0)
            if let lowCPU = low.workersCPUPerSlot, let highCPU = high.workersCPUPerSlot {
                let received = receivedOnOneMachine(costs)
                let (lowWorkers, lowBytes) = perByteShare(low, cpu: lowCPU, receivedCost: received)
                let (highWorkers, highBytes) = perByteShare(high, cpu: highCPU, receivedCost: received)
                let perByte = max((highWorkers - lowWorkers) / (highBytes - lowBytes), 0)
                costs.workerPerByte = perByte
                costs.workerPerMessage = max((lowWorkers - perByte * lowBytes) / 2, 0)
            } else {
                // A capacity.json without the workers' CPU: the same code paths as the coordinator's.
                costs.workerPerByte = costs.coordinatorPerResultByte
                costs.workerPerMessage = costs.coordinatorPerMessage
            }
            return costs
        }

        /// The workers' turnaround that makes the model's cycle for `single` (one worker) its measured one: the time per slot
        /// the model without a turnaround leaves unexplained, or 0 where the model is already slower.
        static func turnaround(_ single: Measured, _ costs: ScalingModel.Costs, sharedCores: Double) throws -> Double {
            var costs = costs
            costs.workerTurnaround = 0
            let without = try ScalingModel.predict(single.workload, on: ScalingModel.Cluster(workers: 1, sharedCores: sharedCores), costs: costs)
            return max(0, (single.seconds - without.iterationSeconds) / Double(single.batch))
        }

        /// `costs` with run `m`'s own measured CPU per slot in place of the fitted per-message and per-byte costs:
        /// the coordinator's loop thread's (less its bookkeeping, which keeps its own measured figure) as two messages
        /// per slot, its I/O thread's and the workers' likewise; nil where the run did not measure both. The turnaround (a
        /// delay, not CPU) stays; `run` fits one of its own for these costs.
        static func ownCPU(_ m: Measured, _ costs: ScalingModel.Costs) -> ScalingModel.Costs? {
            guard var coordinator = m.coordinatorCPUPerSlot, let workers = m.workersCPUPerSlot else { return nil }
            var own = costs
            if let loop = m.coordinatorLoopCPUPerSlot {
                // The I/O thread's share, a message in and one out per slot; the loop keeps the rest.
                own.coordinatorIOPerMessage = max(coordinator - loop, 0) / 2
                own.coordinatorIOPerByte = 0
                coordinator = loop
            } else {
                own.coordinatorIOPerMessage = nil; own.coordinatorIOPerByte = nil
            }
            let bookkeeping = m.bookkeeping ?? 0
            own.coordinatorPerIteration = bookkeeping
            own.coordinatorPerIterationFloat = 0
            own.coordinatorPerMessage = max(coordinator - bookkeeping / Double(m.batch), 0) / 2
            own.coordinatorPerResultByte = 0; own.coordinatorPerEncodedByte = 0; own.coordinatorApplyPerFloat = 0
            own.workerPerMessage = workers / 2
            own.workerPerByte = 0; own.workerPerReceivedByte = 0
            return own
        }

        /// `costs` for runs whose processes all share one machine (every run the model is checked against): no link and
        /// no latency.
        ///
        /// Why: over loopback a message's "transfer" is the kernel copying it, on the sender's and the receiver's CPU,
        /// and getrusage counts that kernel time in the CPU per slot the costs are fitted to; charging the calibrated
        /// loopback throughput as well counted each result's bytes twice (a 1-worker run at θ 1M: 4.7 ms per result on
        /// top of the CPU that already held it). The same holds for the latency: calibrate's is the median round trip
        /// of a ping through both processes' libzmq I/O threads (17.7 µs on the Zen 5 of 2026-12-04), which is their
        /// threads' and the kernel's CPU, again in the CPU per slot, and it was charged as a one-way latency, twice per
        /// slot (2.3 ms of a 1-worker run's 8.9 ms iteration at θ 5k). What is neither CPU nor copying — waking a
        /// sleeping thread — is the turnaround, fitted to the one-worker run.
        ///
        /// What the loopback's copies cost where no fitted figure holds them: a worker receiving θ
        /// (`receivedOnOneMachine`), unless `loopbackReceive` is false (costs from a run's own CPU, which holds them).
        static func onOneMachine(_ costs: ScalingModel.Costs, loopbackReceive: Bool = true) -> ScalingModel.Costs {
            var free = costs
            if loopbackReceive { free.workerPerReceivedByte = receivedOnOneMachine(costs) }
            free.linkBytesPerSecond = 1e15
            free.latency = 0
            return free
        }

        /// A worker's CPU per byte of an assignment received over the loopback: decoding it (`workerPerReceivedByte`,
        /// microbenchmarked without a socket) and the loopback's copies into the worker (the calibrated loopback's time
        /// per byte, which is CPU on one machine).
        ///
        /// Why: the workers' CPU per slot the costs are fitted to holds θ's receive, but at 8 workers only an eighth of
        /// a θ per slot, and with 64 workers each slot receives a whole θ; charged at the decode's microbenchmark alone
        /// (0.09 ns a byte against the loopback's 0.8), 64 workers × θ 1M was predicted 14–65% short in all twelve runs
        /// stored from the Emerald Rapids VM (docs/results/scaling-emerald*).
        static func receivedOnOneMachine(_ costs: ScalingModel.Costs) -> Double {
            (costs.workerPerReceivedByte ?? costs.workerPerByte) + 1 / costs.linkBytesPerSecond
        }

        /// The workers at which efficiency against the slot-time spread is shown: the bar's (issue 15: ≥ 90% at 64).
        static let sensitivityWorkers = 64
        /// The spreads shown beside the measured one (log-standard deviation of slot times).
        static let sensitivitySpreads = [0.0, 0.02, 0.05, 0.1, 0.2]

        /// Efficiency at 64 workers with the small θ's reference slot, at each slot-time spread and slots per worker.
        ///
        /// Why: with one slot per worker, every iteration waits for the slowest of 64 slots, so the predicted efficiency is
        /// mostly the spread it is given; the spread measured here is this machine's (a VM whose own speed moves from
        /// slot to slot), not the workload's. The table says what a user's cluster gets for the spread its slots show
        /// (metrics.jsonl's `slot_seconds`).
        func spreadSensitivity(_ costs: ScalingModel.Costs, spread measured: Double) throws -> [SpreadRow] {
            let spreads = (Self.sensitivitySpreads + [measured]).sorted()
            return try Self.lineKinds.flatMap { perWorker, pipelined in
                try spreads.map { spread in
                    let workload = Self.workload(theta: Self.thetaSizes[0], metaBatch: perWorker * Self.sensitivityWorkers,
                                                 slotSeconds: slotSecondsSmall, spread: spread, pipelined: pipelined)
                    let p = try ScalingModel.predict(workload, on: ScalingModel.Cluster(workers: Self.sensitivityWorkers), costs: costs)
                    return SpreadRow(slotSpread: spread, slotsPerWorker: perWorker, pipelined: pipelined, workers: Self.sensitivityWorkers,
                                     efficiency: p.efficiency, measured: spread == measured)
                }
            }
        }

        func sensitivityMarkdown(_ rows: [SpreadRow]) -> String {
            let spreads = Array(Set(rows.map(\.slotSpread))).sorted()
            var s = "\n### Efficiency at \(Self.sensitivityWorkers) workers against the slot-time spread (θ \(Self.thetaSizes[0]) floats, "
            s += String(format: "%.3f s slots)\n\n", slotSecondsSmall)
            s += "| slots per worker | " + spreads.map { spread in
                String(format: "log-sd %.3f", spread) + (rows.contains { $0.slotSpread == spread && $0.measured } ? " (measured)" : "")
            }.joined(separator: " | ") + " |\n"
            s += "|---:|" + String(repeating: "---:|", count: spreads.count) + "\n"
            for (perWorker, pipelined) in Self.lineKinds {
                let line = spreads.map { spread in
                    rows.first { $0.slotsPerWorker == perWorker && $0.pipelined == pipelined && $0.slotSpread == spread }!
                }
                s += "| \(Self.kindLabel(perWorker, pipelined)) | " + line.map { String(format: "%.1f%%", $0.efficiency * 100) }.joined(separator: " | ") + " |\n"
            }
            return s
        }

        /// What holds efficiency down: the resource whose removal (a free coordinator CPU, an unlimited link, slots that all
        /// take the median time) gains the most, with the efficiency it would reach.
        func limit(_ workload: ScalingModel.Workload, workers: Int, costs: ScalingModel.Costs) throws -> String {
            var freeCPU = costs
            freeCPU.coordinatorPerMessage = 0; freeCPU.coordinatorPerResultByte = 0
            freeCPU.coordinatorPerEncodedByte = 0; freeCPU.coordinatorApplyPerFloat = 0
            freeCPU.coordinatorPerIteration = 0; freeCPU.coordinatorPerIterationFloat = 0
            freeCPU.coordinatorIOPerMessage = nil; freeCPU.coordinatorIOPerByte = nil
            var freeLink = costs
            freeLink.linkBytesPerSecond = 1e15
            var even = workload
            even.slotSpread = 0
            let cluster = ScalingModel.Cluster(workers: workers)
            let gains = [("coordinator CPU", try ScalingModel.predict(workload, on: cluster, costs: freeCPU).efficiency),
                         ("coordinator link", try ScalingModel.predict(workload, on: cluster, costs: freeLink).efficiency),
                         ("barrier (slot-time spread)", try ScalingModel.predict(even, on: cluster, costs: costs).efficiency)]
            let best = gains.max { $0.1 < $1.1 }!
            return String(format: "%@ (%.0f%% without it)", best.0, best.1 * 100)
        }

        func markdown(_ rows: [Checked], _ grid: [Predicted], shared: Double) -> String {
            var s = "### Model vs measured (this machine: coordinator and workers share \(String(format: "%.2f", shared)) cores' worth of parallel compute)\n\n"
            s += "| compute | θ floats | workers | meta-batch | measured s/iteration (apply to apply) | model s/iteration | error | model's bottleneck | model with the run's own CPU per slot | error |\n|---|---:|---:|---:|---:|---:|---:|---|---:|---:|\n"
            for r in rows {
                s += "| \(r.kind) | \(r.thetaFloats) | \(r.workers) | \(r.metaBatch) | "
                s += String(format: "%.4f | %.4f | %+.1f%% | ", r.measuredSeconds, r.predictedSeconds, r.error * 100) + "\(r.bottleneck) | "
                s += r.ownCPUSeconds.map { String(format: "%.4f | %+.1f%% |", $0, (r.ownCPUError ?? 0) * 100) } ?? "— | — |"
                s += "\n"
            }
            s += "\n### Predictions (\(linkGbit) Gbit/s coordinator link each way, \(latencyUs) µs latency, one core per worker, slot times lognormal around the measured median)\n\n"
            s += "| θ floats | slots per worker | workers | meta-batch | s/iteration | efficiency | coordinator CPU busy | its I/O thread busy | link out busy | link in busy | below 90%: what limits it |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
            for g in grid {
                s += "| \(g.thetaFloats) | \(Self.kindLabel(g.slotsPerWorker, g.pipelined)) | \(g.workers) | \(g.metaBatch) | "
                s += String(format: "%.3f | %.1f%% | %.1f%% | %.1f%% | %.1f%% | %.1f%% | ", g.iterationSeconds, g.efficiency * 100,
                            g.coordinatorBusy * 100, g.coordinatorIOBusy * 100, g.linkOutBusy * 100, g.linkInBusy * 100)
                s += "\(g.bottleneck) |\n"
            }
            s += "\n### Where efficiency first falls below 90%\n\n"
            for (theta, perWorker, pipelined, line) in lines(grid) {
                let batch = "meta-batch = \(perWorker) × workers\(pipelined ? ", pipelined" : "")"
                if let first = line.first(where: { $0.efficiency < 0.9 }) {
                    s += "- θ \(theta) floats, \(batch): at \(first.workers) workers "
                    s += String(format: "(%.1f%%), ", first.efficiency * 100) + "bottleneck: \(first.bottleneck)\n"
                } else {
                    s += "- θ \(theta) floats, \(batch): ≥ 90% at every size simulated (up to \(line.last?.workers ?? 0) workers; larger batches are not simulated)\n"
                }
            }
            return s
        }

        /// Efficiency against workers (log scale), one line per θ size and slots per worker.
        func svg(_ grid: [Predicted]) -> String {
            let width = 640.0, height = 400.0, left = 60.0, right = 180.0, top = 20.0, bottom = 50.0
            func x(_ workers: Int) -> Double { left + log2(Double(workers)) / 10 * (width - left - right) }
            func y(_ e: Double) -> Double { top + (1 - min(max(e, 0), 1.05) / 1.05) * (height - top - bottom) }
            var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
            s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
            for e in stride(from: 0.0, through: 1.0, by: 0.2) {
                s += "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(y(e))\" y2=\"\(y(e))\" stroke=\"#ddd\"/><text x=\"\(left - 8)\" y=\"\(y(e) + 4)\" text-anchor=\"end\">\(Int(e * 100))%</text>\n"
            }
            s += "<line x1=\"\(left)\" x2=\"\(width - right)\" y1=\"\(y(0.9))\" y2=\"\(y(0.9))\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n"
            for w in [1, 4, 16, 64, 256, 1024] {
                s += "<text x=\"\(x(w))\" y=\"\(height - bottom + 18)\" text-anchor=\"middle\">\(w)</text>\n"
            }
            s += "<text x=\"\((left + width - right) / 2)\" y=\"\(height - 8)\" text-anchor=\"middle\">workers</text>\n"
            let colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
            for (index, (theta, perWorker, pipelined, line)) in lines(grid).enumerated() {
                let colour = colours[index % colours.count]
                let points = line.map { "\(x($0.workers)),\(y($0.efficiency))" }.joined(separator: " ")
                let dash = pipelined ? " stroke-dasharray=\"6 3\"" : ""
                s += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"\(dash) points=\"\(points)\"/>\n"
                let label = "θ \(theta == Self.thetaSizes[0] ? "5k" : "1M"), batch \(perWorker)×W\(pipelined ? ", pipelined" : "")"
                s += "<text x=\"\(width - right + 10)\" y=\"\(top + 20 + Double(index) * 18)\" fill=\"\(colour)\">\(label)</text>\n"
            }
            return s + "</svg>\n"
        }

        /// The bytes of an assignment a worker receives per slot as the model charges them (`Simulation.workerReceives`):
        /// its head, and θ in the share of assignments that carry it (one per worker holding one, per version).
        /// The bytes the coordinator's I/O thread moves per slot: the assignment a worker receives and the result it sends.
        static func ioBytesPerSlot(_ m: Measured) -> Double {
            workerBytesReceivedPerSlot(m) + Double(4 * m.theta + ScalingModel.resultOverheadBytes)
        }

        static func workerBytesReceivedPerSlot(_ m: Measured) -> Double {
            let carrying = Double(min(m.workers, m.batch)) / Double(m.batch)
            return Double(ScalingModel.assignmentHeadBytes) + carrying * Double(4 * m.theta)
        }

        /// The part of a worker's CPU per slot that the per-message and per-byte costs are fitted to, and the bytes
        /// charged at the per-byte cost: the update's, the assignment's received bytes taken out at `receivedCost`.
        static func perByteShare(_ m: Measured, cpu: Double, receivedCost: Double) -> (cpu: Double, bytes: Double) {
            (cpu - receivedCost * workerBytesReceivedPerSlot(m), Double(4 * m.theta + ScalingModel.resultOverheadBytes))
        }

        /// The θ sizes predicted (CartPole's 64-64 and 1000-1000 MLPs), and each line's slots per worker and whether its
        /// meta-iterations are pipelined (`meta.pipeline`: the barrier's tail filled by the next iteration's slots).
        static let thetaSizes = [4_610, 1_008_002]
        static let lineKinds: [(perWorker: Int, pipelined: Bool)] = [(1, false), (4, false), (16, false), (1, true), (4, true)]

        /// Iterations a pipelined line simulates: its window starts at the second update, so it needs more than the
        /// synchronous lines' 4 to measure as many intervals (4 of them, against 3).
        static let pipelinedIterations = 6

        /// A predicted line's workload: the reference slot with `spread`, pipelined or not.
        static func workload(theta: Int, metaBatch: Int, slotSeconds: Double, spread: Double, pipelined: Bool) -> ScalingModel.Workload {
            var workload = ScalingModel.Workload(thetaFloats: theta, metaBatch: metaBatch, slotSeconds: slotSeconds)
            workload.slotSpread = spread
            workload.pipelined = pipelined
            if pipelined { workload.iterations = pipelinedIterations }
            return workload
        }

        static func kindLabel(_ perWorker: Int, _ pipelined: Bool) -> String { pipelined ? "\(perWorker), pipelined" : "\(perWorker)" }

        /// The grid as lines of one θ size and line kind, in that order, each by worker count.
        func lines(_ grid: [Predicted]) -> [(theta: Int, perWorker: Int, pipelined: Bool, line: [Predicted])] {
            Self.thetaSizes.flatMap { theta in
                Self.lineKinds.map { perWorker, pipelined in
                    (theta, perWorker, pipelined,
                     grid.filter { $0.thetaFloats == theta && $0.slotsPerWorker == perWorker && $0.pipelined == pipelined })
                }
            }
        }
    }
}
