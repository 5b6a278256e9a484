"""The dataset behind :class:`~mmformer.data.modules.manifest.ManifestData`: one split's fields, ready to batch.

``dataset[list_of_indices]`` is a whole batch, a dict keyed by *role* (see the DataModule's docstring):
text, labels, numbers and vectors were encoded at setup and are gathered with tensor indexing; image
and audio files are decoded here, per sample, so DataLoader workers decode in parallel and the data
never has to fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mmformer.data.common.ids import Ragged
from mmformer.data.readers.manifest import FieldSpec, ManifestError, decode_audio, decode_image
from mmformer.tokenizers.audio import AudioBatch


@dataclass
class RoleValues:
    """One role's values over a split.

    Attributes:
        spec: the manifest field the role reads.
        values: file paths (image/audio), :class:`Ragged` ids (text), or ``(N,)``/``(N, D)`` tensors.
        texts: the strings of a text field (a text ``source``/``target`` also batches them as ``source_text``/
            ``target_text``).
        lengths: ``(N,)`` padded size of each sample along its varying axis (audio samples at the field's
            rate, text ids), or None for fixed-size values.
    """

    spec: FieldSpec
    values: list[str] | Ragged | Tensor
    texts: list[str] | None = None
    lengths: Tensor | None = None


class ManifestDataset(Dataset):
    """A split's roles by index; ``dataset[indices]`` is the collated batch.

    Args:
        roles: role → its values (every role has the same N).
        names: ``manifest:line`` of each sample (named in decoding errors).
        zeroshot: ``(N, K)`` long class ids of the zero-shot label fields (batched as ``labels``), or None.
    """

    def __init__(self, roles: dict[str, RoleValues], names: list[str], zeroshot: Tensor | None = None) -> None:
        self.roles, self.names, self.zeroshot = roles, names, zeroshot
        for role, rv in roles.items():
            n = len(rv.values.lengths) if isinstance(rv.values, Ragged) else len(rv.values)
            if n != len(names):
                raise ValueError(f"role {role!r} has {n} values for {len(names)} samples")

    def __len__(self) -> int:
        return len(self.names)

    def lengths(self) -> Tensor | None:
        """``(N,)`` the bucketing key: an audio role's samples when there is one (it dominates the cost),
        else the longest text role's ids; None when every role has a fixed size."""
        audio = [rv.lengths for rv in self.roles.values() if rv.spec.type == "audio"]
        text = [rv.lengths for rv in self.roles.values() if rv.spec.type == "text"]
        if audio:
            return audio[0]
        if text:
            return torch.stack(text).amax(dim=0)  # type: ignore[arg-type]
        return None

    def _decode(self, idx: list[int], rv: RoleValues) -> Any:
        out = []
        for i in idx:  # file decoding is per file by nature
            try:
                out.append(decode_image(rv.values[i], rv.spec) if rv.spec.type == "image"  # type: ignore[index]
                           else decode_audio(rv.values[i], rv.spec))  # type: ignore[index]
            except (OSError, ValueError) as err:
                raise ManifestError(f"{self.names[i]}, field {rv.spec.name!r}: {err}") from err
        if rv.spec.type == "image":  # (B, C, H, W) normalized like the caption/image DataModules
            c = rv.spec["channels"]
            mean = torch.tensor(rv.spec["mean"] or [0.5] * c).view(1, c, 1, 1)
            std = torch.tensor(rv.spec["std"] or [0.5] * c).view(1, c, 1, 1)
            return (torch.stack(out).float().div_(255) - mean) / std
        lengths = torch.tensor([len(w) for w in out], dtype=torch.long)
        wave = torch.nn.utils.rnn.pad_sequence(out, batch_first=True)  # (B, L) zero-padded
        return AudioBatch(wave, lengths)

    def __getitem__(self, indices: int | Sequence[int]) -> dict[str, Any]:
        idx_list = [indices] if isinstance(indices, int) else [int(i) for i in indices]
        idx = torch.as_tensor(idx_list, dtype=torch.long)
        batch: dict[str, Any] = {}
        for role, rv in self.roles.items():
            if rv.spec.type in ("image", "audio"):
                batch[role] = self._decode(idx_list, rv)
            elif isinstance(rv.values, Ragged):
                batch[role] = rv.values.pad(idx)  # (B, T) right-padded with 0
                if role in ("source", "target", "prompt"):  # the strings too, as TranslationData's batches carry them
                    batch[f"{role}_text"] = [rv.texts[i] for i in idx_list]  # type: ignore[index]
            else:
                batch[role] = rv.values[idx]  # type: ignore[index]  # (B,) or (B, D)
        if self.zeroshot is not None:
            batch["labels"] = self.zeroshot[idx]  # (B, K)
        batch["index"] = idx
        return batch
