"""``python -m mips.pgtd --shard 0/2``: fill the chapter's per-task records (see :func:`mips.pgtd.experiment.main`)."""

from mips.pgtd.experiment import main

raise SystemExit(main())
