"""Builders of the offline embedded defaults, cached under ``data/``: the WordNet/Apertium
translation corpus, the espeak-ng speech corpus, rendered shape scenes, scripted CartPole/Pendulum
datasets, and the manifests of the cross-modal recipes (spoken keywords, shape captions, speech translation, audio–text
pairs; :mod:`~corpora.manifests` holds their shared cache), and second corpora of other
domains (software messages from the system's gettext catalogs; Flite and Festival voices; small digits on
coloured backgrounds for the contrastive recipe, :mod:`~corpora.glyph_captions`; printed
letters from held-out fonts for image classification, :mod:`~corpora.printed_letters`; Acrobot
swing-ups for the decision transformer, :mod:`~corpora.acrobot`).

This package sits beside ``mmformer`` and is installed with it; ``mmformer`` never imports it (a test scans
for that). Recipes reach a builder by dotted path in their data section's ``embedded:`` (a function
``build(data_dir)``, or a class given with ``class_path``/``init_args`` whose instances are called with
``data_dir``), and a builder returns the paths of the splits it wrote. Builders may import mmformer's
readers, never its DataModules."""
