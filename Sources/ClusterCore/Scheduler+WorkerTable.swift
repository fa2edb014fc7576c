import Wire

extension Scheduler {
    /// The registered workers by connection, the order they joined, and which of them can take work now — kept up to
    /// date on every change of a worker, so that handing out work looks only at the workers that can take it and no
    /// event sorts them all.
    ///
    /// Why: every result or tick used to scan every worker twice (counting free threads, then finding the free ones in
    /// join order), a dictionary lookup and a copy each: `metatrain bench` timed the Scheduler at 20.6 µs per result
    /// with 64 workers and 224.6 µs with 1,024 — the coordinator's whole budget per slot at that size.
    struct WorkerTable {
        private(set) var byPeer: [Peer: WorkerRecord] = [:]
        /// Their connections in the order they joined (their numbers ascending), kept as they come and go.
        private(set) var joinOrder: [Peer] = []
        /// The free threads of each worker that can take work (`WorkerRecord.canTakeWork`), with its join number.
        private var free: [Peer: (threads: Int, number: Int)] = [:]
        /// The same workers by join number, ascending (kept as they change, so no event sorts them).
        private var freeByNumber: [(number: Int, peer: Peer)] = []
        /// The free threads of all workers that can take work.
        private(set) var freeThreads = 0

        var count: Int { byPeer.count }
        var values: Dictionary<Peer, WorkerRecord>.Values { byPeer.values }

        subscript(peer: Peer) -> WorkerRecord? {
            get { byPeer[peer] }
            _modify {
                let joined = byPeer[peer] != nil
                yield &byPeer[peer]
                switch (joined, byPeer[peer] != nil) {
                case (false, true): joinOrder.append(peer)
                case (true, false): joinOrder.removeAll { $0 == peer }
                default: break
                }
                refresh(peer)
            }
        }

        mutating func removeValue(forKey peer: Peer) -> WorkerRecord? {
            defer { refresh(peer) }
            guard let worker = byPeer.removeValue(forKey: peer) else { return nil }
            joinOrder.removeAll { $0 == peer }
            return worker
        }

        /// (connection, worker) of every worker, in join order.
        var inJoinOrder: [(key: Peer, value: WorkerRecord)] { joinOrder.compactMap { peer in byPeer[peer].map { (peer, $0) } } }

        /// The workers that can take work, in the order they joined.
        var availableInJoinOrder: [Peer] { freeByNumber.map(\.peer) }

        private mutating func refresh(_ peer: Peer) {
            let before = free[peer]
            var now = 0
            if let worker = byPeer[peer], worker.canTakeWork, worker.threads > worker.load {
                now = worker.threads - worker.load
                free[peer] = (now, worker.number)
                if before == nil { freeByNumber.insert((worker.number, peer), at: place(of: worker.number)) }
            } else if let before {
                free[peer] = nil
                let i = place(of: before.number)
                if i < freeByNumber.count, freeByNumber[i].peer == peer { freeByNumber.remove(at: i) }
            }
            freeThreads += now - (before?.threads ?? 0)
        }

        /// The first index of `freeByNumber` whose number is ≥ `number`.
        private func place(of number: Int) -> Int {
            var low = 0, high = freeByNumber.count
            while low < high {
                let mid = (low + high) / 2
                if freeByNumber[mid].number < number { low = mid + 1 } else { high = mid }
            }
            return low
        }
    }
}
