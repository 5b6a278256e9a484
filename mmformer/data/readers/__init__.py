"""Readers of the formats users bring: IDX files, image files and ImageFolder trees, parallel text
(TSV/JSONL/line-aligned files), audio files and NeMo manifests, caption tables (CSV/TSV), D4RL
trajectories (.npz/HDF5). Readers import nothing else from :mod:`mmformer.data` but each other."""
