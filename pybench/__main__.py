from pybench.cli.main import main

raise SystemExit(main())
