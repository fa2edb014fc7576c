// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "metatrain",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "MetaTrain", targets: ["NeuralNet", "Environments", "DQN"]),
        .executable(name: "metatrain", targets: ["metatrain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // OpenBLAS's CBLAS interface (Debian's libopenblas-dev): the GEMM backend NeuralNet benchmarks against.
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .target(name: "NeuralNet", dependencies: ["COpenBLAS"]),
        .target(name: "Environments", dependencies: ["NeuralNet"]),
        .target(name: "DQN", dependencies: ["NeuralNet", "Environments"]),
        .executableTarget(
            name: "metatrain",
            dependencies: [
                "NeuralNet", "Environments", "DQN",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "NeuralNetTests", dependencies: ["NeuralNet"]),
        .testTarget(
            name: "EnvironmentsTests",
            dependencies: ["Environments", "NeuralNet"],
            resources: [.copy("Fixtures")]
        ),
        .testTarget(name: "DQNTests", dependencies: ["DQN", "Environments", "NeuralNet"]),
    ]
)
