"""The LightningDataModules, one module per data family: image classification, translation, speech
recognition, image–caption pairs, trajectories. Each implements
:class:`~mmformer.data.spec.ProvidesDataSpec`."""
