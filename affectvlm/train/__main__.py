from affectvlm.train.train import main

raise SystemExit(main())
