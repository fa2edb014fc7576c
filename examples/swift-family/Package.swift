// swift-tools-version:6.0
// A task family written in Swift, meta-trained by metatrain without forking it: this package depends on metatrain's
// library products, registers its family, and is then a whole `metatrain` (coordinator, worker, local, eval, …).
import Foundation
import PackageDescription

// SwiftPM names a path dependency after its folder: whatever this checkout of metatrain is called.
let metatrain = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().lastPathComponent.lowercased()

let package = Package(
    name: "swift-family",
    platforms: [.macOS(.v13)],
    dependencies: [.package(path: "../..")],
    targets: [
        .executableTarget(
            name: "moving-target",
            dependencies: [
                .product(name: "MetaTrain", package: metatrain),
                .product(name: "MetaTrainCLI", package: metatrain),
            ]
        ),
    ]
)
