import Testing
import Transport

/// The allocator settings for θ-sized message buffers: applied by default, the user's own settings win, and a
/// value of METATRAIN_ALLOCATOR that means nothing is refused.
@Suite struct MessageAllocatorTests {
    @Test func appliesByDefaultAndGlibcAcceptsTheValues() throws {
        #if os(Linux)
        // mallopt returns 0 for a value glibc refuses (an mmap threshold above 32 MB, say): this fails then.
        #expect(try MessageAllocator.configure(environment: [:]))
        #expect(try MessageAllocator.configure(environment: ["METATRAIN_ALLOCATOR": "tuned", "PATH": "/bin"]))
        #endif
    }

    @Test func theUsersOwnSettingsWin() throws {
        for environment in [["METATRAIN_ALLOCATOR": "default"],
                            ["GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"],
                            ["GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F:glibc.malloc.trim_threshold=0"],
                            ["MALLOC_TRIM_THRESHOLD_": "0"], ["MALLOC_MMAP_THRESHOLD_": "131072"],
                            ["GLIBC_TUNABLES": "glibc.malloc.arena_max=2"], ["MALLOC_ARENA_MAX": "4"]] {
            #expect(try !MessageAllocator.shouldConfigure(environment: environment), "\(environment)")
            #expect(try !MessageAllocator.configure(environment: environment), "\(environment)")
        }
        // Settings that are not metatrain's leave them to metatrain.
        for environment in [["GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F"], ["GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"],
                            ["MALLOC_CHECK_": "3"], ["MALLOC_ARENA_TEST": "2"]] {
            #expect(try MessageAllocator.shouldConfigure(environment: environment), "\(environment)")
        }
    }

    @Test func theCoordinatorsWorkingSetIsKeptOnlyWhenItExceedsTheDefaultAndTheUserHasNotChosen() {
        #if os(Linux)
        // 68 updates of a 1M-float θ; glibc takes it (mallopt returns 0 for a value it refuses).
        #expect(MessageAllocator.keepFree(68 * 4_032_008, environment: [:]))
        #expect(MessageAllocator.keepFree(Int.max, environment: [:]), "capped at glibc's largest, not refused")
        #endif
        #expect(!MessageAllocator.keepFree(Int(MessageAllocator.trimThreshold), environment: [:]), "no more than the default")
        for environment in [["METATRAIN_ALLOCATOR": "default"], ["MALLOC_TRIM_THRESHOLD_": "0"],
                            ["METATRAIN_ALLOCATOR": "jemalloc"]] {
            #expect(!MessageAllocator.keepFree(1 << 30, environment: environment), "\(environment)")
        }
    }

    @Test func anUnknownChoiceIsAnError() {
        #expect(throws: MessageAllocator.InvalidChoice.self) {
            try MessageAllocator.configure(environment: ["METATRAIN_ALLOCATOR": "jemalloc"])
        }
        do {
            _ = try MessageAllocator.shouldConfigure(environment: ["METATRAIN_ALLOCATOR": "Default"])
            Issue.record("METATRAIN_ALLOCATOR=Default was accepted")
        } catch {
            #expect(error.description.contains("METATRAIN_ALLOCATOR=Default"))
        }
    }
}
