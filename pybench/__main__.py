from pybench.cli import main

raise SystemExit(main())
