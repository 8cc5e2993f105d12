"""Which base-optimizer config fields are *data* (traceable values: vmappable together with seeds) rather
than *shape* (they change array shapes or the program). Kept free of JAX imports: sweep worker processes read
it before they pin themselves to a core, and JAX must not start its thread pool before that."""

PPO_DATA_DIALS = ("train_alpha", "train_corner_k", "weight_decay")
