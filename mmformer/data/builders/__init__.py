"""Builders of the offline embedded defaults, cached under ``data/``: the WordNet/Apertium
translation corpus, the espeak-ng speech corpus, rendered shape scenes, scripted CartPole/Pendulum
datasets, the image sets read from packages (Fashion-MNIST from Debian, scikit-learn digits), and the
manifests of the cross-modal recipes (spoken keywords, shape captions, speech translation, audio–text
pairs; :mod:`~mmformer.data.builders.manifests` holds their shared cache), and second corpora of other
domains (software messages from the system's gettext catalogs; Flite and Festival voices; small digits on
coloured backgrounds for the contrastive recipe, :mod:`~mmformer.data.builders.glyph_captions`; printed
letters from held-out fonts for image classification, :mod:`~mmformer.data.builders.printed_letters`; Acrobot
swing-ups for the decision transformer, :mod:`~mmformer.data.builders.acrobot`).
Builders may import readers, never DataModules."""
