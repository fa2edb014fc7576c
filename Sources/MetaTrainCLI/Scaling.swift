import CapacityModel
import ArgumentParser
import Cluster
import Foundation

/// `metatrain scaling`: the calibrated scaling model (Cluster.ScalingModel) — measure its costs, predict a cluster,
/// and report the model against real runs next to its predictions up to 1,024 workers (docs/SCALING.md).
struct Scaling: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The scaling model: calibrate its costs here, predict iteration time and efficiency for a cluster, report model vs measured.",
        subcommands: [Calibrate.self, Predict.self, Report.self])

    struct Calibrate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Measure the model's per-message, per-byte and link costs on this machine (JSON).")
        func run() throws {
            let costs = try ScalingModel.Costs.measure()
            print(String(decoding: try Scaling.encoder.encode(costs), as: UTF8.self))
        }
    }

    struct Predict: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Predict one cluster's iteration time, efficiency and bottleneck (JSON).")
        @Option(help: "Costs from `metatrain scaling calibrate`.") var costs: String
        @Option(help: "θ's size in floats.") var theta: Int
        @Option(help: "Slots per meta-iteration.") var metaBatch: Int
        @Option(help: "Worker processes.") var workers: Int
        @Option(help: "Compute threads per worker.") var threads = 1
        @Option(help: "Median slot compute time, seconds.") var slotSeconds: Double
        @Option(help: "Log-standard deviation of slot times.") var slotSpread = 0.05
        @Option(help: "Cores coordinator and workers share on one machine, in cores' worth of parallel compute (default: every worker and the coordinator on their own).") var sharedCores: Double?
        @Option(help: "The coordinator's link in Gbit/s each way (default: the calibrated one).") var linkGbit: Double?
        @Option(help: "One-way latency in µs (default: the calibrated one).") var latencyUs: Double?
        @Option(help: "Iterations to simulate (the first is not counted).") var iterations = 4
        @Flag(help: "Pipelined meta-iterations (cluster.yaml meta.pipeline: true): the next iteration's slots run during this one's tail.") var pipelined = false

        func run() throws {
            var c = try Scaling.loadCosts(costs)
            if let linkGbit { c.linkBytesPerSecond = linkGbit * 1e9 / 8 }
            if let latencyUs { c.latency = latencyUs * 1e-6 }
            var workload = ScalingModel.Workload(thetaFloats: theta, metaBatch: metaBatch, slotSeconds: slotSeconds)
            workload.slotSpread = slotSpread
            workload.iterations = iterations
            workload.pipelined = pipelined
            var cluster = ScalingModel.Cluster(workers: workers, sharedCores: sharedCores)
            cluster.threadsPerWorker = threads
            let prediction = try ScalingModel.predict(workload, on: cluster, costs: c)
            print(String(decoding: try Scaling.encoder.encode(prediction), as: UTF8.self))
        }
    }

    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        return e
    }()

    static func loadCosts(_ path: String) throws -> ScalingModel.Costs {
        do {
            return try JSONDecoder().decode(ScalingModel.Costs.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw ValidationError("\(path): not a costs file from `metatrain scaling calibrate`: \(error)")
        }
    }
}
