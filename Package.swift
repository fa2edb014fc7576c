// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "metatrain",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "MetaTrain", targets: ["NeuralNet", "Environments", "EnvironmentServer", "DQN", "MetaLearning", "Wire", "Transport", "ClusterCore", "Cluster"]),
        .library(name: "MetaTrainCLI", targets: ["MetaTrainCLI"]),
        .executable(name: "metatrain", targets: ["metatrain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        // System libraries from Debian packages (scripts/bootstrap.sh installs them).
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZeroMQ", pkgConfig: "libzmq", providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CProtobufC", pkgConfig: "libprotobuf-c", providers: [.apt(["libprotobuf-c-dev"])]),
        // glibc's malloc.h (mallopt), part of libc: nothing to link.
        .systemLibrary(name: "CMalloc"),
        // protoc-c output for proto/metatrain.proto, committed; scripts/gen-proto.sh regenerates it.
        .target(name: "MetaTrainProto", dependencies: ["CProtobufC"]),

        // metatrain's own GEMM kernels, one per x86-64 ISA level, chosen at run time from cpuid (not from a
        // BLAS's list of CPU models). Optimised even in debug builds (the tests train networks), and never
        // contracted into FMAs the source did not ask for: the per-element operation order is the contract.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O2", "-ffp-contract=off"])]),
        .target(name: "NeuralNet", dependencies: ["CKernels", "COpenBLAS"]),
        .target(name: "Environments", dependencies: ["NeuralNet"]),
        // Gymnasium environments in Python server processes, behind the `Environment` protocol.
        // glibc's CPU-affinity calls (GNU extensions Swift's Glibc module does not show).
        .target(name: "CAffinity"),
        .target(name: "EnvironmentServer", dependencies: ["CAffinity", "Environments", "NeuralNet"]),
        .target(name: "DQN", dependencies: ["NeuralNet", "Environments"]),
        .target(name: "MetaLearning", dependencies: ["DQN", "Environments", "NeuralNet"]),
        .target(name: "Wire", dependencies: ["MetaTrainProto", "MetaLearning", "DQN", "Environments", "NeuralNet"]),
        .target(name: "Transport", dependencies: ["CZeroMQ", "CMalloc"]),
        // The coordinator's and the sessions' decisions as pure state machines: no socket, thread, clock, file, YAML or
        // crypto can be imported here, so the core is pure by construction and tested by simulation and transcripts.
        .target(name: "ClusterCore", dependencies: ["Wire", "MetaLearning", "NeuralNet"]),
        .target(
            name: "Cluster",
            dependencies: [
                "ClusterCore", "Wire", "Transport", "MetaLearning", "DQN", "Environments", "EnvironmentServer", "NeuralNet",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // The Scheduler in simulated time with modelled workers, link and CPU (`metatrain scaling`): a capacity tool, not
        // runtime code.
        .target(name: "CapacityModel", dependencies: ["ClusterCore", "Cluster", "Transport", "Wire", "MetaLearning", "DQN", "Environments", "NeuralNet"]),
        // Every command, as a library, so a program of one's own (examples/swift-family) can be a whole metatrain.
        .target(
            name: "MetaTrainCLI",
            dependencies: [
                "Cluster", "ClusterCore", "CapacityModel", "MetaLearning", "DQN", "Environments", "EnvironmentServer", "NeuralNet",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(name: "metatrain", dependencies: ["MetaTrainCLI"]),
        .testTarget(name: "NeuralNetTests", dependencies: ["NeuralNet"]),
        .testTarget(
            name: "EnvironmentsTests",
            dependencies: ["Environments", "NeuralNet"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(name: "EnvironmentServerTests", dependencies: ["EnvironmentServer", "DQN", "Environments", "NeuralNet"]),
        .testTarget(name: "DQNTests", dependencies: ["DQN", "Environments", "NeuralNet"]),
        .testTarget(name: "MetaLearningTests", dependencies: ["MetaLearning", "DQN", "Environments", "NeuralNet"]),
        .testTarget(
            name: "WireTests", dependencies: ["Wire", "MetaLearning", "DQN", "Environments", "NeuralNet"],
            exclude: ["interop.py"]
        ),
        .testTarget(name: "TransportTests", dependencies: ["Transport"]),
        .testTarget(
            name: "ClusterTests", dependencies: ["Cluster", "ClusterCore", "CapacityModel", "Wire", "Transport", "MetaLearning", "NeuralNet", "DQN", "Environments"],
            exclude: ["export_check.py", "tensorboard_check.py", "Scenarios"]
        ),
    ]
)
