"""Parsing helpers shared by the text readers: every problem becomes one AdcError naming the
file, the line and the problem, instead of a pandas traceback or a silently coerced value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from adc_dist.errors import AdcError
from adc_dist.inputs.files import short


def read_rows(path: Path, n_fields: int, *, sep: str, skip: int = 0, str_cols: tuple[int, ...] = ()) -> pd.DataFrame:
    """The delimited rows of ``path`` after ``skip`` header lines, columns 0..n_fields-1.

    Rows with more fields than ``n_fields`` are errors (pandas would otherwise shift them
    into an index or drop fields); rows with fewer fields show up as missing values that
    :func:`int_ids` / :func:`ratings` report. ``str_cols`` are read as strings (tokens).
    """
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) is dropped, not read into the first id
        frame = pd.read_csv(path, sep=sep, header=None, skiprows=skip, dtype={c: str for c in str_cols},
                            skip_blank_lines=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise AdcError(f"{path}: no data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as e:
        raise AdcError(f"{path}: malformed rows ({e})") from None
    if frame.shape[1] != n_fields:
        raise AdcError(f"{path}: malformed rows: expected {n_fields} fields per row separated by "
                       f"{sep!r}, found {frame.shape[1]}")
    if len(frame) == 0:
        raise AdcError(f"{path}: no data rows")
    return frame


def _first_bad(path: Path, bad: np.ndarray, values: pd.Series, first_line: int, what: str) -> AdcError:
    i = int(np.flatnonzero(bad)[0])
    return AdcError(f"{path}, line {first_line + i}: {what} (got {short(values.iloc[i], 40)}; "
                    f"{int(bad.sum())} bad row(s) in all)")


def int_ids(values: pd.Series, path: Path, name: str, first_line: int) -> np.ndarray:
    """``values`` as non-negative int64 ids; ``first_line`` is the file line of row 0."""
    if pd.api.types.is_integer_dtype(values.dtype):
        ids = values.to_numpy(dtype=np.int64)
    else:
        num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = ~np.isfinite(num) | (num != np.floor(num)) | (np.abs(num) >= 2.0**62)
        if bad.any():
            raise _first_bad(path, bad, values, first_line, f"{name} id is missing or not an integer")
        ids = num.astype(np.int64)
    if (ids < 0).any():
        raise _first_bad(path, ids < 0, values, first_line, f"{name} id is negative")
    return ids


def ids(values: pd.Series, path: Path, name: str, first_line: int) -> np.ndarray:
    """User or item ids of a user's table: non-negative integers when every value is a number
    (int64, checked like :func:`int_ids`), else string tokens (an object array, stripped).

    A column with one non-numeric value ("u17", "B00005JKTY") is read as names throughout, so
    ``7`` and ``u7`` are two ids; the dense ids they get are saved beside the split.
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        raise AdcError(f"{path}: the {name} column holds true/false values, not ids")
    text = values.astype("string").str.strip()
    num = pd.to_numeric(text, errors="coerce")
    names = num.isna() & text.notna() & (text != "")  # values that are not numbers
    # Integers past 2**62 are names too (hashes, long numeric codes): int64 and float64 would
    # overflow or merge them.
    huge = np.abs(num.to_numpy(dtype=np.float64, na_value=0.0)) >= 2.0**62
    if names.any() or huge.any():
        return tokens(text.astype(object).where(text.notna(), None), path, name, first_line)
    return int_ids(values, path, name, first_line)


def tokens(values: pd.Series, path: Path, name: str, first_line: int) -> np.ndarray:
    """``values`` as non-empty string tokens (RecBole ``:token`` ids), an object array."""
    bad = values.isna().to_numpy() | (values.astype(str).str.strip() == "").to_numpy()
    if bad.any():
        raise _first_bad(path, bad, values, first_line, f"{name} token is missing")
    return values.astype(str).str.strip().to_numpy(dtype=object)


def ratings(values: pd.Series, path: Path, first_line: int) -> np.ndarray:
    """``values`` as finite float32 ratings."""
    num = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(num)
    if bad.any():
        raise _first_bad(path, bad, values, first_line, "rating is missing, NaN or not a number")
    return num.astype(np.float32)
