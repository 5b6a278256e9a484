"""Builders of the offline embedded defaults, cached under ``data/``: the WordNet/Apertium
translation corpus, the espeak-ng speech corpus, rendered shape scenes, scripted CartPole/Pendulum
datasets, and the image sets read from packages (Fashion-MNIST from Debian, scikit-learn digits).
Builders may import readers, never DataModules."""
