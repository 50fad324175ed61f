from spade_tf.cli import main

raise SystemExit(main())
