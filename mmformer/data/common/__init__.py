"""Machinery every DataModule shares: exactly resumable samplers and the resumable DataModule base
(:mod:`.sampling`), token-budget / length-bucketed batch samplers (:mod:`.batching`), the evaluation
loader (:mod:`.loading`) and bos/eos-wrapped id rows (:mod:`.ids`)."""
