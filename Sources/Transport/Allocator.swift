#if os(Linux)
import CMalloc
#endif

/// Keeps the large buffers of messages (θ, updates: 270 KB – 4 MB for θ of 70k – 1M floats) in the heap, so that
/// each message reuses memory instead of mapping fresh pages.
///
/// Why: every message allocates and frees buffers of θ's size (libzmq's frame, its copy, the decoded tensor). With
/// glibc's defaults such a buffer is mapped and unmapped, or the heap is trimmed after it is freed, so every message
/// pays a page fault per 4 KB of it; on a 2-vCPU Xeon these settings cut the coordinator's CPU per slot at θ 70k by
/// 29–48% and the workers' by 29–65% (docs/SCALING.md, "The allocator"). Buffers above 32 MB (θ over 8M floats) are
/// still mapped, and up to 64 MB of free heap is kept rather than returned: memory stays bounded by the peak the
/// messages need. Every thread allocates from the one main heap (`arenaMax`): libzmq's I/O thread allocates each
/// received frame, and in a heap of its own those frames' pages were unmapped and faulted in again at every burst
/// of replies (docs/SCALING.md, "One heap for libzmq's I/O thread").
public enum MessageAllocator {
    /// The settings applied: buffers up to this size come from the heap (glibc's largest allowed value).
    public static let mmapThreshold: Int32 = 32 << 20
    /// Free memory at the top of the heap kept for the next message rather than returned to the system.
    public static let trimThreshold: Int32 = 64 << 20
    /// Heaps (glibc's arenas) the process's threads share: one, the main heap, which the trim threshold governs.
    ///
    /// Why: glibc gives a second thread a heap of its own, made of 64 MB pieces that it unmaps as soon as one is
    /// wholly free, whatever the trim threshold. libzmq's I/O thread allocates every frame it receives (4 MB at θ of
    /// 1M floats); when 64 workers' replies arrive together they fill new pieces, freed again once folded, so every
    /// burst faulted its pages in afresh: a third of the coordinator's CPU at θ 1M × 64 workers (perf, `clear_page`).
    /// Small allocations still come from each thread's own cache (glibc's tcache) without the heap's lock.
    public static let arenaMax: Int32 = 1

    /// A `METATRAIN_ALLOCATOR` value other than `tuned` (the default) or `default` (glibc's own settings).
    public struct InvalidChoice: Error, CustomStringConvertible {
        public let value: String
        public var description: String { "METATRAIN_ALLOCATOR=\(value): expected tuned (the default) or default (glibc's own settings)" }
    }

    /// Applies the settings unless the environment asks for the allocator's own: `METATRAIN_ALLOCATOR=default`, or
    /// the user's own value of any of them (`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=…`, `trim_threshold` or
    /// `arena_max`; `MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, `MALLOC_ARENA_MAX`). Returns whether it
    /// applied them. Call it before any thread starts: a thread keeps the heap it first allocated from.
    @discardableResult
    public static func configure(environment: [String: String]) throws(InvalidChoice) -> Bool {
        guard try shouldConfigure(environment: environment) else { return false }
        #if os(Linux)
        return mallopt(M_MMAP_THRESHOLD, mmapThreshold) == 1 && mallopt(M_TRIM_THRESHOLD, trimThreshold) == 1
            && mallopt(M_ARENA_MAX, arenaMax) == 1
        #else
        return false
        #endif
    }

    /// Raises the free heap kept (the trim threshold) to `bytes` when that is more than `trimThreshold`, capped at
    /// glibc's largest (2 GiB − 1), under the same conditions as `configure`. Returns whether it changed it.
    ///
    /// Why: the coordinator held an iteration's updates until the meta-update (meta-batch × θ's bytes: 256 MB at θ
    /// of 1M floats and meta-batch 64) and freed them together; with 64 MB kept, glibc returned the rest at every
    /// meta-update and the next iteration faulted every page in again — a fifth of the coordinator's CPU at 1M (perf,
    /// docs/SCALING.md "Coordinator CPU at θ of 1M floats"). It now holds only the updates that arrive ahead of an
    /// earlier slot, at worst the same; the heap stays at the peak the run needs anyway.
    @discardableResult
    public static func keepFree(_ bytes: Int, environment: [String: String]) -> Bool {
        guard bytes > Int(trimThreshold), (try? shouldConfigure(environment: environment)) == true else { return false }
        #if os(Linux)
        return mallopt(M_TRIM_THRESHOLD, Int32(clamping: bytes)) == 1
        #else
        return false
        #endif
    }

    /// Whether `configure` would apply the settings in this environment (the user's own thresholds win).
    public static func shouldConfigure(environment: [String: String]) throws(InvalidChoice) -> Bool {
        switch environment["METATRAIN_ALLOCATOR"] {
        case nil, "tuned": break
        case "default": return false
        case let other?: throw InvalidChoice(value: other)
        }
        let tunables = environment["GLIBC_TUNABLES"] ?? ""
        for setting in ["mmap_threshold", "trim_threshold", "arena_max"] {
            // glibc spells the environment variables MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_, MALLOC_ARENA_MAX.
            let variable = "MALLOC_\(setting.uppercased())" + (setting == "arena_max" ? "" : "_")
            if tunables.contains("glibc.malloc.\(setting)=") || environment[variable] != nil { return false }
        }
        return true
    }
}
