import ClusterCore
import DQN
import Environments
import Foundation
import Logging
import MetaLearning
import NeuralNet
import Transport
import Wire

/// One iteration's slot updates as the Scheduler hands them on, in slot order: their running sum (the mean `apply`
/// takes, bit for bit), or under distillation the updates themselves (the experts are distilled together), and each
/// slot's statistics.
///
/// Why: holding every update until the last one arrived was meta-batch × θ bytes (256 MB at θ of 1M floats and
/// meta-batch 64) and put the whole sum after the barrier; now only the updates that arrive ahead of an earlier slot
/// wait (in the Scheduler).
struct IterationFold {
    let iteration: Int
    let keepsUpdates: Bool
    private(set) var sum = RunningMean()
    private(set) var updates: [ParameterVector] = []
    private(set) var statistics: [SlotStatistics] = []

    init(iteration: Int, keepsUpdates: Bool) { self.iteration = iteration; self.keepsUpdates = keepsUpdates }

    mutating func add(_ payload: SlotPayload) {
        if keepsUpdates { updates.append(payload.update) } else { sum.add(payload.update) }
        statistics.append(payload.statistics)
    }
}

/// Applying a meta-update and telling the world: metrics.jsonl, TensorBoard, the progress line, status.json, checkpoints.
extension Coordinator {
    /// Adds slot `slot`'s update to the iteration's sum (the Scheduler hands them on in slot order, each once).
    func fold(iteration: Int, slot: Int, payload: SlotPayload) throws {
        guard iteration == state.iteration, slot == (folded.iteration == iteration ? folded.statistics.count : 0) else {
            try stopRun(.internalInconsistency("the scheduler folded slot \(slot) of iteration \(iteration) after \(folded.statistics.count) slots of iteration \(folded.iteration), θ at \(state.iteration)"))
        }
        if folded.iteration != iteration { folded = IterationFold(iteration: iteration, keepsUpdates: config.meta.algorithm == .distill) }
        folded.add(payload)
    }

    func apply(iteration: Int) throws {
        guard iteration == state.iteration, folded.iteration == iteration, folded.statistics.count == config.meta.metaBatch else {
            try stopRun(.internalInconsistency("the scheduler applied iteration \(iteration) with \(folded.statistics.count) slots of iteration \(folded.iteration) folded, θ at \(state.iteration)"))
        }
        let fold = folded
        folded = IterationFold(iteration: -1, keepsUpdates: false)  // the sum's memory goes before θ's next version
        // The update is applied to a copy and kept only if θ stays finite: a non-finite θ never replaces the last
        // good one, which the stop checkpoints (and every worker is told why: issue 39, defect 4).
        var next = state
        if fold.keepsUpdates {
            let kernel: GEMMBackend = scheduler.numerics.policy == .portable ? .portable : .selected
            let updates = try config.metaUpdates(iteration: iteration, theta: state.theta, slotUpdates: fold.updates, kernel: kernel)
            next.apply(updates: updates, settings: config.meta)
        } else {
            next.apply(mean: fold.sum.mean, settings: config.meta)
        }
        guard next.theta.isFinite else {
            try stopDiverged("θ became non-finite at meta-update \(iteration + 1) (every slot's update was finite and within bounds; their mean step was not)")
        }
        state = next
        let statistics = fold.statistics
        if evaluation.isDue(state.iteration) { evaluation.start(iteration: state.iteration, theta: state.theta) }
        // Everything cheap is taken now, at the update; writing it out waits until the commands of this event (the
        // next iteration's hand-out among them) have run: `writeProgress`.
        let appliedAt = clock.now
        let seconds = (appliedAt - iterationStarted) / .seconds(1)
        let meanReturn = statistics.map(\.meanReturn).reduce(0, +) / Double(statistics.count)
        let usage = ProcessUsage.now()
        let line: [String: Any] = [
            "iteration": iteration, "mean_inner_return": meanReturn, "workers": scheduler.workerCount,
            "seconds": seconds, "elapsed_seconds": (appliedAt - started) / .seconds(1),
            // The same moment on the machine's monotonic clock, which a worker's CPU samples share.
            "monotonic_seconds": ProcessUsage.monotonicSeconds(),
            "slots_per_second": Double(statistics.count) / max(seconds, 1e-9),
            "bytes_sent": bytesSent, "bytes_received": bytesReceived, "messages_received": messagesIn,
            "messages_sent": messagesOut, "tensor_bytes_sent": tensorBytesSent, "tensor_encodings": tensorEncodings,
            "slot_seconds": statistics.map(\.seconds),
            "coordinator_busy_seconds": busy / .seconds(1), "parameters": state.theta.count,
            "slots_applied": scheduler.counters.slotsApplied, "duplicates_dropped": scheduler.counters.duplicatesDropped,
            "stale_dropped": scheduler.counters.staleDropped, "requeued": scheduler.counters.requeued,
            "workers_registered": scheduler.counters.workersRegistered,
            "workers_declared_dead": scheduler.counters.workersDeclaredDead,
            "parameter_transfers": scheduler.counters.parameterTransfers, "backups_sent": scheduler.counters.backupsSent,
            "numerics_policy": scheduler.numerics.policy.rawValue,
            "numerics_fingerprint": scheduler.numerics.fingerprint ?? "",
            "numerics_kernel": scheduler.numerics.kernel,
            "coordinator_cpu_seconds": usage.cpuSeconds,
            // The loop thread's own share of it (this function runs on the loop); the rest is libzmq's I/O thread.
            "coordinator_loop_cpu_seconds": ProcessUsage.threadCPUSeconds(),
            "coordinator_max_rss_kb": usage.maxRSSKilobytes,
        ]
        recentIterationSeconds.append(seconds)
        if recentIterationSeconds.count > 10 { recentIterationSeconds.removeFirst() }
        let eta = recentIterationSeconds.reduce(0, +) / Double(recentIterationSeconds.count) * Double(max(config.meta.iterations - state.iteration, 0))
        let message = String(format: "iteration %4d/%d  mean inner return %8.2f  workers %3d  %6.2f slots/s  sent %8d B  busy %.3f s  ETA %@", iteration + 1, config.meta.iterations, meanReturn, scheduler.workerCount, Double(statistics.count) / max(seconds, 1e-9), bytesSent, busy / .seconds(1), formatDuration(eta))
        pendingProgress = PendingProgress(line: line, theta: state.theta, iteration: iteration, message: message)
        bytesSent = 0; bytesReceived = 0; messagesIn = 0; messagesOut = 0; tensorBytesSent = 0; busy = .zero
        iterationStarted = appliedAt
    }

    /// Writes the applied iteration's record — its metrics.jsonl line, TensorBoard scalars, progress line and
    /// status.json — once the commands that applied it have run.
    ///
    /// Why after them: the next iteration's assignments are among those commands, so the workers compute while the
    /// coordinator writes (2–45 ms an iteration with 1–8 workers on 2 cores, docs/SCALING.md) instead of waiting for it at the
    /// barrier. A metrics line's `seconds` is therefore apply to apply, and `bookkeeping_seconds` the writing time
    /// of every earlier iteration (a running total).
    func writeProgress() {
        guard let progress = pendingProgress else { return }
        pendingProgress = nil
        let writing = clock.now
        var line = progress.line
        // θ cannot move on before the next update, so the current version's hash is this record's.
        line["params_sha256"] = progress.iteration + 1 == state.iteration ? thetaSHA256() : parametersSHA256(progress.theta)
        line["bookkeeping_seconds"] = bookkeeping / .seconds(1)
        appendMetrics(line)
        let scalars = line.compactMap { key, value -> (String, Double)? in
            guard key != "iteration", let number = value as? NSNumber, !(value is Bool) else { return nil }
            return ("metrics/\(key)", number.doubleValue)
        }.sorted { $0.0 < $1.0 }
        // Step = meta-updates applied (1 for the first), as checkpoints and meta-evaluations count them.
        do { try tensorBoard.add(step: progress.iteration + 1, scalars: scalars) } catch {
            logger.error("could not write TensorBoard events to \(tensorBoard.path): \(error)")
        }
        logger.info("\(progress.message)")
        // status.json here only when the phase changes; a new iteration is written by the main loop at most once a
        // statusInterval (`statusShown`): rewriting it at every iteration (70 a second at θ 5k) was CPU the loop took
        // from handling results.
        let next = state.iteration >= config.meta.iterations ? "training finished" : "running"
        if next != phase { writeStatus(state: next) }
        bookkeeping += clock.now - writing
    }

    func appendMetrics(_ line: [String: Any]) {
        do { try folder.appendMetrics(line) } catch { logger.error("could not append to \(folder.metrics): \(error)") }
    }

    /// Writes RUN_DIR/status.json (atomically) for `metatrain status`: progress, ETA, throughput, workers,
    /// the last checkpoint. A failure is logged, never fatal.
    func writeStatus(state phase: String) {
        self.phase = phase
        statusWritten = clock.now
        statusShown = (state.iteration, scheduler.workerCount)
        do { try folder.writeStatus(statusReport().json(pretty: true)) } catch { logger.error("could not write \(folder.status): \(error)") }
    }

    /// status.json's object as one line of JSON, for a status request over the socket.
    func statusJSON() -> String {
        do {
            return String(decoding: try statusReport().json(pretty: false), as: UTF8.self)
        } catch {
            logger.error("could not encode the status: \(error)")
            return "{}"
        }
    }

    /// What `metatrain status` shows: progress, ETA, throughput, workers, the last checkpoint.
    func statusReport() -> StatusReport {
        let mean = recentIterationSeconds.isEmpty ? nil : recentIterationSeconds.reduce(0, +) / Double(recentIterationSeconds.count)
        let timed = mean.flatMap { $0.isFinite ? $0 : nil }
        let left = max(config.meta.iterations - state.iteration, 0)
        let workers = scheduler.workerStatus.map {
            StatusReport.Worker(id: $0.id, host: $0.host, threads: $0.threads, busy: $0.busy, slotsDone: $0.slotsDone,
                                suspected: $0.suspected, lastHeardMsAgo: max(now - $0.lastHeard, 0), envSteps: $0.envSteps)
        }
        let checkpoint = lastCheckpointUnixMs.map { StatusReport.Checkpoint(iteration: lastCheckpoint, unixMs: $0) }
        let eval = evaluation.last.flatMap { e in
            e.before.isFinite && e.after.isFinite ? StatusReport.MetaEval(iteration: e.iteration, returnBefore: e.before, returnAfter: e.after) : nil
        }
        return StatusReport(runId: runID, state: phase, iteration: state.iteration, iterations: config.meta.iterations,
                            metaBatch: config.meta.metaBatch,
                            pid: getpid(), host: ProcessInfo.processInfo.hostName,
                            refreshSeconds: Double(Self.statusRefresh.components.seconds), workers: workers,
                            updatedUnixMs: UInt64(Date().timeIntervalSince1970 * 1000), endpoint: advertised,
                            paramsSha256: thetaSHA256(), secondsPerIteration: timed,
                            slotsPerSecond: timed.map { Double(config.meta.metaBatch) / max($0, 1e-9) },
                            etaSeconds: timed.map { $0 * Double(left) }, lastCheckpoint: checkpoint, lastMetaEval: eval)
    }

    /// θ's SHA-256, computed once per version (metrics.jsonl and status.json both carry it: 2–3 ms at θ of 1M floats).
    func thetaSHA256() -> String {
        if let hashed = thetaHash, hashed.iteration == state.iteration { return hashed.sha256 }
        let sha256 = parametersSHA256(state.theta)
        thetaHash = (state.iteration, sha256)
        return sha256
    }

    func checkpoint() throws {
        let record = CheckpointRecord(runID: runID, algorithm: config.meta.algorithm, runSeed: config.run.seed,
                                      configHash: config.hash, state: state,
                                      createdUnixMs: UInt64(Date().timeIntervalSince1970 * 1000),
                                      numerics: scheduler.numerics)
        let path = try store.write(record)
        lastCheckpoint = state.iteration
        lastCheckpointUnixMs = UInt64(Date().timeIntervalSince1970 * 1000)
        logger.info("checkpoint \(path) (iteration \(state.iteration), θ \(parametersSHA256(state.theta).prefix(16))…)")
    }
}

/// What `Coordinator.apply` took at the update for `writeProgress` to write: the metrics line without θ's hash, θ
/// itself (a copy-on-write value: no copy unless θ changes first, which it cannot before the next update) and the
/// progress line, formatted.
struct PendingProgress {
    let line: [String: Any]
    let theta: ParameterVector
    let iteration: Int
    let message: String
}
