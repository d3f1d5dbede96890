"""The pure rollout core: no I/O, no clock; everything it needs comes in as arguments."""
