"""OpenCLIP-style caption tables: a CSV/TSV with a header, an image-path column and a caption column."""

from __future__ import annotations

from pathlib import Path

from mmformer.data.readers.text import is_file, table_rows


def read_caption_table(path: str | Path, image_column: str = "filepath", caption_column: str = "title",
                       separator: str = "\t", image_root: str | Path | None = None
                       ) -> tuple[list[str], list[str], list[str]]:
    """Reads an OpenCLIP-style CSV/TSV → ``(image paths, captions, row names)``.

    Relative image paths resolve against ``image_root`` (default: the table's folder). Every row is
    checked here: a missing image file or an empty caption raises ``ValueError`` naming the file and
    line (the line a row starts on: a quoted caption may span lines), as does invalid UTF-8 or a row the csv
    module cannot split; an undecodable image is named when it is first read.
    """
    path = Path(path)
    if not is_file(path):
        raise FileNotFoundError(f"caption table {path} does not exist")
    root = Path(image_root) if image_root is not None else path.parent
    images, captions, rows = [], [], []
    header, found = table_rows(path, separator)
    missing = [c for c in (image_column, caption_column) if c not in header]
    if missing:
        raise ValueError(f"{path}:1: no column {missing[0]!r}; the header has {header} (separator "
                         f"{separator!r}); set image_column/caption_column/separator")
    for line, row in found:
        where = f"{path}:{line}"
        image, text = (row.get(image_column) or "").strip(), (row.get(caption_column) or "").strip()
        if not text:
            raise ValueError(f"{where}: empty caption in column {caption_column!r}; fill it or drop the row")
        if not image:
            raise ValueError(f"{where}: empty image path in column {image_column!r}")
        file = Path(image) if Path(image).is_absolute() else root / image
        if not is_file(file):
            raise ValueError(f"{where}: image file {file} does not exist")
        images.append(str(file))
        captions.append(text)
        rows.append(where)
    if not images:
        raise ValueError(f"{path} has no rows")
    return images, captions, rows
