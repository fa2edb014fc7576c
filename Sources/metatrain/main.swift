import MetaTrainCLI

// The `metatrain` command: every subcommand lives in MetaTrainCLI, so a package of one's own can register task
// families and run the same commands (examples/swift-family).
MetaTrain.main()
