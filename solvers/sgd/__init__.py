"""SGD engines: the torch trainer, the torch SAE module, batched restarts."""
