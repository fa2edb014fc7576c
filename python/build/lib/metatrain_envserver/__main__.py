from metatrain_envserver.server import main

raise SystemExit(main())
