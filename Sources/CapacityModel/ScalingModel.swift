import Cluster
import ClusterCore
import Foundation
import MetaLearning
import NeuralNet
import Wire

/// Predicts a run's iteration time on clusters this machine cannot hold: the real `Scheduler`, driven in simulated
/// time by modelled workers, a modelled network and a coordinator charged measured CPU costs.
///
/// Why the real Scheduler: what limits a cluster is as much the scheduling (the sync barrier, backups of stragglers,
/// θ once per worker per version, heartbeats) as the hardware, and a model that re-implemented it would drift from
/// the code. Everything else is a resource with a queue: the coordinator's loop thread (its messages are handled one
/// at a time), its libzmq I/O thread (each message's socket reads or writes, one at a time, beside the loop), its link (each direction sends one message at a time at `Costs.linkBytesPerSecond`), and the CPU
/// cores, shared by processor sharing among the jobs on one machine (`Cluster.sharedCores`: everything on one
/// machine, as on this one; nil: each worker on cores of its own and the coordinator's two threads on a core each).
/// `scripts/scaling.sh` calibrates the costs here and checks the predictions against real runs (docs/SCALING.md).
public enum ScalingModel {
    /// Per-message and per-byte costs, in seconds, measured by `metatrain scaling --calibrate`.
    public struct Costs: Codable, Sendable, Equatable {
        /// Coordinator CPU for any message in or out (envelope, the scheduler's step, the socket call).
        public var coordinatorPerMessage: Double
        /// Coordinator CPU per byte of an inbound result (decode, validation, the divergence bound).
        public var coordinatorPerResultByte: Double
        /// Coordinator CPU per byte of θ encoded, once per version.
        public var coordinatorPerEncodedByte: Double
        /// Coordinator CPU per float of the meta-update, per slot (the sum of updates and the step).
        public var coordinatorApplyPerFloat: Double
        /// Coordinator CPU to write each applied iteration's record (metrics.jsonl with θ's SHA-256, TensorBoard,
        /// status.json, the log line), a fixed part and one per float of θ; it runs after the next iteration's
        /// hand-out, so it delays results, not assignments. `metatrain scaling report` fits both to the runs'
        /// `bookkeeping_seconds`; calibrate leaves them 0.
        public var coordinatorPerIteration: Double = 0
        public var coordinatorPerIterationFloat: Double = 0
        /// CPU of the coordinator's libzmq I/O thread per message it moves, in or out, and per byte: the socket's reads
        /// and writes, which run beside the loop thread on a core of their own (or a share of the cores), not on it.
        /// `metatrain scaling report` fits both to the runs' CPU less their loop thread's
        /// (`coordinator_loop_cpu_seconds`); nil (calibrate, cost files and runs from before it): none apart, all of the
        /// coordinator's CPU is the loop's, as the model charged it then.
        public var coordinatorIOPerMessage: Double?
        public var coordinatorIOPerByte: Double?
        /// Worker CPU per message received or sent (the socket thread, the hand-off to a compute thread), and per
        /// byte of the update it sends (making and encoding it, the send's copy).
        public var workerPerMessage: Double
        public var workerPerByte: Double
        /// Worker CPU per byte of an assignment received (joining its frames, decoding θ): another code path than
        /// the update's, so another cost. Measured by `metatrain scaling calibrate` on the worker's own decode; nil
        /// (cost files from before it): `workerPerByte`, as the model charged every byte then.
        public var workerPerReceivedByte: Double?
        /// Time a slot spends in a worker's hand-offs (socket thread → compute thread → socket thread) that is not
        /// CPU the model charges: a delay per slot. `metatrain scaling report` fits it to one run (the smallest θ, one
        /// instant worker), where it is most of the time; calibrate leaves it 0.
        public var workerTurnaround: Double = 0
        /// How many slots computing at once on this machine go as fast as that many on their own cores: a machine's
        /// vCPUs may share their vector units (two hyperthreads of one core give about 1 for GEMM-bound slots).
        /// Measured by running slots on one thread and on all at once; the model uses it as the shared cores.
        public var parallelCompute: Double = 1
        /// The coordinator's link, each direction; one message at a time.
        public var linkBytesPerSecond: Double
        /// One-way latency of a message.
        public var latency: Double

        public init(coordinatorPerMessage: Double, coordinatorPerResultByte: Double, coordinatorPerEncodedByte: Double,
                    coordinatorApplyPerFloat: Double, workerPerMessage: Double, workerPerByte: Double,
                    linkBytesPerSecond: Double, latency: Double) {
            self.coordinatorPerMessage = coordinatorPerMessage; self.coordinatorPerResultByte = coordinatorPerResultByte
            self.coordinatorPerEncodedByte = coordinatorPerEncodedByte; self.coordinatorApplyPerFloat = coordinatorApplyPerFloat
            self.workerPerMessage = workerPerMessage; self.workerPerByte = workerPerByte; self.linkBytesPerSecond = linkBytesPerSecond; self.latency = latency
        }
    }

    /// What the run computes.
    public struct Workload: Sendable, Equatable {
        public var thetaFloats: Int
        public var metaBatch: Int
        /// Iterations simulated; the first (start-up, registration) is not counted in the prediction.
        public var iterations = 4
        /// A slot's compute time: lognormal with this median and log-standard deviation.
        public var slotSeconds: Double
        public var slotSpread: Double = 0.05
        /// A slot straggles (its machine is slow this once) with this probability, taking `stragglerFactor` × longer.
        public var stragglerProbability: Double = 0
        public var stragglerFactor: Double = 5
        /// Worker deaths per worker-hour (exponential; a dead worker falls silent, liveness finds it).
        public var deathsPerWorkerHour: Double = 0
        /// Pipelined meta-iterations (`MetaSettings.pipelined`): the next iteration's slots run while this one's finish.
        /// The window measured then starts at the second update (needs `iterations` ≥ 3).
        public var pipelined = false

        public init(thetaFloats: Int, metaBatch: Int, slotSeconds: Double) {
            self.thetaFloats = thetaFloats; self.metaBatch = metaBatch; self.slotSeconds = slotSeconds
        }
    }

    /// Where it runs.
    public struct Cluster: Sendable, Equatable {
        public var workers: Int
        public var threadsPerWorker = 1
        /// nil: every worker has `threadsPerWorker` cores of its own and the coordinator a core of its own. A number:
        /// coordinator and workers share this many cores of one machine.
        public var sharedCores: Double?
        public var heartbeatIntervalMs = 1000
        public var liveness = 10

        public init(workers: Int, sharedCores: Double? = nil) { self.workers = workers; self.sharedCores = sharedCores }
    }

    /// What the model predicts for one (workload, cluster).
    public struct Prediction: Codable, Sendable, Equatable {
        /// Mean seconds per meta-iteration after the first.
        public var iterationSeconds: Double
        /// Share of the worker threads' time spent computing slots: 1 is perfect scaling.
        public var efficiency: Double
        /// Busy shares of the coordinator's loop thread, of its I/O thread and of its link, out and in.
        public var coordinatorBusy: Double
        public var coordinatorIOBusy: Double
        public var linkOutBusy: Double
        public var linkInBusy: Double
        /// Slots per second.
        public var slotsPerSecond: Double
        /// The resource closest to saturation: "workers", "coordinator CPU", "coordinator I/O thread",
        /// "coordinator link (out)" or "(in)".
        public var bottleneck: String
        public var backupsSent: Int
        public var workersDeclaredDead: Int
    }

    /// The bytes the model counts for an assignment without θ and for a result beyond its update's floats (the
    /// envelope and statistics); `metatrain scaling report` uses them to fit the workers' per-byte CPU.
    public static let assignmentHeadBytes = 300, resultOverheadBytes = 120

    /// Simulates the run; deterministic in `seed`.
    public static func predict(_ workload: Workload, on cluster: Cluster, costs: Costs, seed: UInt64 = 1) throws -> Prediction {
        var simulation = try Simulation(workload: workload, cluster: cluster, costs: costs, seed: seed)
        return try simulation.run()
    }
}
